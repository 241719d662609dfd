"""C2PA manifests (content credentials) through the C2PA SDK (``c2pa-python``): the active manifest's
claim generator, signer, actions and digital source types, and the SDK's validation.

Offline by design: remote manifests and OCSP are never fetched (an ingest process must not be made
to call out by an image). Trust is judged against the configured anchors only
(``MISINFO_C2PA_TRUST_ANCHORS``, a PEM bundle); without them ``trusted`` stays None.

States: ``intact`` when the SDK reports ``Valid`` or ``Trusted`` (every hash and the claim
signature verify; an untrusted signer is not tampering), ``tampered`` when it reports ``Invalid``
(the failure codes say what failed), ``unreadable`` when the store cannot be parsed or is over
the size limit.
"""

from __future__ import annotations

import io
import json
import threading
from typing import Any

from core.contracts.provenance import C2paEvidence, short_source_type

MAX_ITEMS = 20
MAX_TEXT = 200

_contexts: dict[str, Any] = {}
_lock = threading.Lock()


def _context(trust_pem: str) -> Any:
    """One SDK context per trust bundle, reused by every read (the SDK copies what it needs)."""
    import c2pa

    with _lock:
        ctx = _contexts.get(trust_pem)
        if ctx is None:
            settings: dict[str, Any] = {
                "verify": {
                    "remote_manifest_fetch": False,
                    "ocsp_fetch": False,
                    "verify_trust": bool(trust_pem),
                },
                "builder": {"thumbnail": {"enabled": False}},
            }
            if trust_pem:
                settings["trust"] = {"trust_anchors": trust_pem}
            ctx = _contexts[trust_pem] = c2pa.Context.from_dict(settings)
        return ctx


def _cap(value: Any) -> str:
    return str(value)[:MAX_TEXT]


def _agent(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(str(value.get(k, "")) for k in ("name", "version") if value.get(k)).strip()
    return str(value or "")


def _generator(manifest: dict[str, Any]) -> str:
    infos = manifest.get("claim_generator_info")
    if isinstance(infos, list) and infos:
        return "; ".join(_agent(i) for i in infos[:3] if isinstance(i, dict))
    return str(manifest.get("claim_generator") or "")


def summarize(
    state: str, trusted: bool | None, results: dict[str, Any] | None, manifest: dict[str, Any]
) -> C2paEvidence:
    """The evidence record from the SDK's validation state, results and active manifest."""
    active = (results or {}).get("activeManifest") or {}
    failures = [str(f.get("code", "")) for f in active.get("failure", []) if isinstance(f, dict)]
    actions: list[str] = []
    sources: list[str] = []
    agents: list[str] = []
    for assertion in manifest.get("assertions", []) or []:
        if not isinstance(assertion, dict) or not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for act in (assertion.get("data") or {}).get("actions", []) or []:
            if not isinstance(act, dict):
                continue
            actions.append(_cap(act.get("action", "")))
            if act.get("digitalSourceType"):
                sources.append(short_source_type(str(act["digitalSourceType"])))
            if act.get("softwareAgent"):
                agents.append(_cap(_agent(act["softwareAgent"])))
    sig = manifest.get("signature_info") or {}
    signer = " / ".join(str(sig[k]) for k in ("common_name", "issuer") if sig.get(k))
    return C2paEvidence(
        state="tampered" if state == "Invalid" else "intact",
        trusted=trusted,
        validation_state=state,
        failures=list(dict.fromkeys(failures))[:MAX_ITEMS],
        claim_generator=_cap(_generator(manifest)),
        signer=_cap(signer),
        title=_cap(manifest.get("title") or ""),
        actions=list(dict.fromkeys(actions))[:MAX_ITEMS],
        digital_source_types=list(dict.fromkeys(sources))[:MAX_ITEMS],
        software_agents=list(dict.fromkeys(a for a in agents if a))[:MAX_ITEMS],
    )


def read_manifest(data: bytes, mime: str, trust_pem: str) -> C2paEvidence:
    """The C2PA evidence of ``data``; ``absent`` when there is no manifest store. Never raises for
    a bad store: that is ``unreadable`` with the SDK's reason."""
    import c2pa

    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, _context(trust_pem))
    except c2pa.C2paError as exc:
        return C2paEvidence(state="unreadable", reason=_cap(f"C2PA store cannot be read: {exc}"))
    if reader is None:
        return C2paEvidence()
    with reader:
        try:
            store = json.loads(reader.json())
        except (c2pa.C2paError, ValueError) as exc:
            return C2paEvidence(state="unreadable", reason=_cap(f"C2PA store cannot be read: {exc}"))
    label = store.get("active_manifest")
    manifest = (store.get("manifests") or {}).get(label) if label else None
    state = str(store.get("validation_state") or "")
    if not isinstance(manifest, dict):
        failures = (store.get("validation_results") or {}).get("activeManifest", {}).get("failure", [])
        codes = ", ".join(str(f.get("code")) for f in failures[:5] if isinstance(f, dict))
        return C2paEvidence(
            state="unreadable", validation_state=state, reason=_cap(f"no active manifest ({codes or state})")
        )
    results = store.get("validation_results") or {}
    # Trust is judged on its own, so a tampered manifest still says whether its signer is trusted.
    passed = {
        str(c.get("code"))
        for c in (results.get("activeManifest") or {}).get("success", [])
        if isinstance(c, dict)
    }
    trusted = "signingCredential.trusted" in passed if trust_pem else None
    return summarize(state, trusted, results, manifest)
