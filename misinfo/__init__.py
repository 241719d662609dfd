"""The application shell: settings read from the environment, the `misinfo` CLI root, the embedded dev stack."""
