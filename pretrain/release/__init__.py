"""Releases to the Hugging Face Hub: a checkpoint becomes a verified revision (branch) of a model
repository, by hand (`slm release`) or during training (the `HubRelease` callback).

- `stage.py`: the release directory (HF export + model card), `card.py`: the model card;
- `hub.py`: upload as one commit on one branch, verification, idempotence; `retry.py`: backoff;
- `release.py`: token + stage + publish; `callback.py`: `HubRelease`.

`HubRelease` is imported on first use (it needs Lightning), so that `slm release` and its
error messages stay fast.
"""

from pretrain.release.hub import ReleaseError, ReleaseResult, publish_release
from pretrain.release.release import hub_api, release_checkpoint
from pretrain.release.stage import stage_release

__all__ = ["HubRelease", "ReleaseError", "ReleaseResult", "publish_release", "hub_api",
           "release_checkpoint", "stage_release"]


def __getattr__(name: str):
    if name == "HubRelease":
        from pretrain.release.callback import HubRelease

        return HubRelease
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
