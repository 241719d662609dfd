"""`misinfo demo`, as `make demo` runs it: the demo detector is built (fine-tuned once, cached in the
state directory), judges images it never trained on, and flags the manipulated ones far more often
than the authentic ones. The second run loads the cached detector instead of training again."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

SUMMARY = re.compile(
    r"^demo: (\d+) images, (\d+) verdicts, (\d+) flagged: "
    r"manipulated (\d+)/(\d+) \(\d+%\), authentic (\d+)/(\d+) \(\d+%\)$"
)


def _summary(stdout: str) -> tuple[int, ...]:
    match = SUMMARY.match(stdout.strip().splitlines()[-1])
    assert match, stdout[-2000:]
    return tuple(int(g) for g in match.groups())


def test_the_demo_detector_flags_manipulated_images_more_than_authentic_ones(settings):
    first = run_cli(settings, "demo", "--images", "40", timeout=900, MISINFO_MODEL_PATH="")
    assert first.returncode == 0, first.stderr[-4000:]
    assert "demo detector: built in" in first.stderr
    images, verdicts, flagged, fake_flagged, fakes, real_flagged, reals = _summary(first.stdout)
    assert images == verdicts == 40 and fakes == reals == 20
    assert flagged == fake_flagged + real_flagged
    assert fake_flagged / fakes - real_flagged / reals >= 0.3
    # one line per verdict, each naming the image's true class
    lines = [line for line in first.stdout.splitlines() if line.startswith("[truly ")]
    assert len(lines) == 40

    again = run_cli(settings, "demo", "--images", "10", timeout=600, MISINFO_MODEL_PATH="")
    assert again.returncode == 0, again.stderr[-4000:]
    assert "demo detector: cached at" in again.stderr and "built in" not in again.stderr
    images, verdicts, *_ = _summary(again.stdout)
    assert images == verdicts == 10
