"""Release a checkpoint: stage it, then publish it with a Hub client holding the user's token.

The token comes from `HF_TOKEN` or huggingface_hub's stored login and goes straight into the
`HfApi` object; it is never a parameter of ours, so it cannot end up in a config, a model card,
a log line or an exception message.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from pretrain.release.card import CardMetadata
from pretrain.release.hub import ReleaseError, ReleaseResult, publish_release
from pretrain.release.retry import RetryPolicy
from pretrain.release.stage import check_repo_id, stage_release

HF_EXTRA_HINT = "install the hf extra: pip install 'slm-pretrain[hf]'"


def hub_api(client_class=None):
    """An authenticated Hub client, `client_class(token=...)` (default `huggingface_hub.HfApi`),
    or ReleaseError when the library or a token is missing. Called before any work, so that a
    bad setup fails in a second and uploads nothing."""
    try:
        import huggingface_hub
    except ImportError:
        raise ReleaseError(f"huggingface_hub is not installed; {HF_EXTRA_HINT}") from None
    token = os.environ.get("HF_TOKEN") or huggingface_hub.get_token()
    if not token:
        raise ReleaseError("no Hugging Face token (set HF_TOKEN or run huggingface-cli login)")
    from huggingface_hub import constants

    if client_class is None and constants.HF_HUB_OFFLINE:
        raise ReleaseError("the Hugging Face Hub is in offline mode (unset HF_HUB_OFFLINE to upload)")
    return (client_class or huggingface_hub.HfApi)(token=token)


def release_checkpoint(checkpoint: str | os.PathLike, repo_id: str, *, api,
                       revision: str | None = None,
                       tokenizer_dir: str | os.PathLike | None = None,
                       card: CardMetadata = CardMetadata(), private: bool = False,
                       update_main: bool = False, force: bool = False,
                       retry: RetryPolicy = RetryPolicy(), staging_dir: str | os.PathLike | None = None,
                       sleep=time.sleep) -> ReleaseResult:
    """Stage `checkpoint` in a temporary directory (under `staging_dir`, default the system
    temp dir) and publish it to `repo_id` through `api` (see `pretrain.release.hub`)."""
    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix=".tmp-release-", dir=staging_dir) as tmp:
        staged = stage_release(checkpoint, Path(tmp) / "release", repo_id=repo_id,
                               revision=revision, tokenizer_dir=tokenizer_dir, card=card)
        return publish_release(api, staged.directory, repo_id, staged.revision, private=private,
                               update_main=update_main, force=force, retry=retry, sleep=sleep)
