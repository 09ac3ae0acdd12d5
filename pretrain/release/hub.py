"""Publish a staged release directory to the Hugging Face Hub as one branch, in one commit, then
verify every remote file against the local one.

The `api` argument is anything with the `huggingface_hub.HfApi` methods used here
(`create_repo`, `list_repo_refs`, `list_repo_commits`, `create_branch`, `create_commit`,
`list_repo_tree`); the command line passes a real `HfApi(token=...)`, tests a local fake. The
token lives only inside that object: nothing in this module sees, logs or raises it.

Layout on the Hub: branch `<revision>` is created from the repository's initial commit (so it
holds exactly `.gitattributes` plus the release's files) and receives the whole release as one
commit. `main` follows the latest release on request with a second commit whose tree equals the
release's (the Hub has no call to move an existing branch to another commit; the LFS objects are
already on the Hub, so that commit uploads nothing large).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from pretrain.release.retry import RetryPolicy, with_retries
from pretrain.errors import PretrainError

logger = logging.getLogger(__name__)

# Files every Hub repository gets in its initial commit; they are not part of a release.
HUB_MANAGED_FILES = frozenset({".gitattributes"})


class ReleaseError(PretrainError):
    """A release cannot be made or did not verify (one line: what, which repo/revision)."""


@dataclass(frozen=True)
class LocalFile:
    """A file of the staged release: its path in the repo, size in bytes and two digests —
    sha256 (what the Hub reports for LFS files) and the git blob sha1 (for regular files)."""

    path_in_repo: str
    local_path: Path
    size: int
    sha256: str
    git_sha1: str


def hash_file(path: Path) -> LocalFile:
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    git_sha1 = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
            git_sha1.update(chunk)
    return LocalFile("", path, size, sha256.hexdigest(), git_sha1.hexdigest())


def scan_release_dir(release_dir: Path) -> dict[str, LocalFile]:
    """Every file under `release_dir` keyed by its POSIX path relative to it, with digests."""
    files = {}
    for path in sorted(p for p in Path(release_dir).rglob("*") if p.is_file()):
        rel = path.relative_to(release_dir).as_posix()
        h = hash_file(path)
        files[rel] = LocalFile(rel, path, h.size, h.sha256, h.git_sha1)
    if not files:
        raise ReleaseError(f"nothing to release: {release_dir} is empty")
    return files


def file_mismatch(local: LocalFile, remote) -> str | None:
    """Why the remote `RepoFile` differs from `local`, or None when they are the same bytes.

    LFS files are compared by size and the LFS sha256; regular (small, text) files by size and
    their git blob id, which is the sha1 of `blob <size>\\0<content>`.
    """
    if remote.size != local.size:
        return f"size {remote.size} != {local.size}"
    if remote.lfs is not None:
        remote_sha256 = remote.lfs["sha256"]
        if remote_sha256 != local.sha256:
            return f"sha256 {remote_sha256[:12]} != {local.sha256[:12]}"
    elif remote.blob_id != local.git_sha1:
        return f"git blob {remote.blob_id[:12]} != {local.git_sha1[:12]}"
    return None


@dataclass
class TreeDiff:
    """How a remote branch differs from the local release (paths; Hub-managed files ignored)."""

    missing: list[str]
    changed: dict[str, str]  # path -> why it differs
    extra: list[str]

    @property
    def identical(self) -> bool:
        return not (self.missing or self.changed or self.extra)

    def summary(self, limit: int = 3) -> str:
        parts = [f"{p} ({why})" for p, why in self.changed.items()] + \
                [f"{p} (missing)" for p in self.missing] + [f"{p} (extra)" for p in self.extra]
        more = f", +{len(parts) - limit} more" if len(parts) > limit else ""
        return ", ".join(parts[:limit]) + more


def remote_files(api, repo_id: str, revision: str) -> dict:
    """path -> RepoFile for every file of `revision` (folders skipped; no per-file expansion:
    size, blob id and LFS sha256 come with the plain tree listing)."""
    entries = api.list_repo_tree(repo_id, revision=revision, recursive=True, repo_type="model")
    return {e.path: e for e in entries if hasattr(e, "blob_id")}


def diff_tree(local: dict[str, LocalFile], remote: dict) -> TreeDiff:
    changed = {}
    for path, lf in local.items():
        if path in remote and (why := file_mismatch(lf, remote[path])):
            changed[path] = why
    return TreeDiff(
        missing=[p for p in local if p not in remote],
        changed=changed,
        extra=[p for p in remote if p not in local and p not in HUB_MANAGED_FILES],
    )


def verify_revision(api, repo_id: str, revision: str, local: dict[str, LocalFile]) -> None:
    """Raise ReleaseError unless `revision` holds exactly the local files, byte for byte."""
    diff = diff_tree(local, remote_files(api, repo_id, revision))
    if not diff.identical:
        raise ReleaseError(f"verification failed: {repo_id}@{revision} differs from the local "
                           f"export: {diff.summary()}")
    logger.info("verified %s@%s: %d files match the local export (size + sha256/git blob)",
                repo_id, revision, len(local))


@dataclass(frozen=True)
class ReleaseResult:
    """What a publish did. `commit` is None when the revision already held these files."""

    repo_id: str
    revision: str
    commit: str | None
    files: int
    main_commit: str | None = None
    main_updated: bool = False


def _branch_heads(api, repo_id: str) -> dict[str, str]:
    refs = api.list_repo_refs(repo_id, repo_type="model")
    return {b.name: b.target_commit for b in refs.branches}


def _initial_commit(api, repo_id: str) -> str:
    return api.list_repo_commits(repo_id, revision="main", repo_type="model")[-1].commit_id


def _sync_branch(api, repo_id: str, branch: str, local: dict[str, LocalFile], *,
                 overwrite: bool, message: str) -> str | None:
    """Make `branch` hold exactly `local` with at most one commit; return its id or None.

    A missing branch is created from the initial commit of `main`. A branch still at that
    commit holds no release yet (new, or left by an interrupted release): whatever the initial
    commit put there (a placeholder README, say) is replaced without asking. Otherwise, files
    already identical are not re-sent, and replacing or deleting files needs `overwrite`.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    heads = _branch_heads(api, repo_id)
    initial = _initial_commit(api, repo_id)
    if branch not in heads:
        api.create_branch(repo_id, branch=branch, revision=initial, exist_ok=True,
                          repo_type="model")
        heads = _branch_heads(api, repo_id)
        logger.info("created branch %s of %s from the initial commit", branch, repo_id)
    diff = diff_tree(local, remote_files(api, repo_id, branch))
    if diff.identical:
        return None
    if (diff.changed or diff.extra) and not (overwrite or heads[branch] == initial):
        raise ReleaseError(f"revision {branch} of {repo_id} already exists with different "
                           f"content: {diff.summary()}; pass --force to replace it")
    ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(local[p].local_path))
           for p in [*diff.missing, *diff.changed]]
    ops += [CommitOperationDelete(path_in_repo=p) for p in diff.extra]
    logger.info("committing %d file(s) to %s@%s (%d deleted)", len(ops) - len(diff.extra),
                repo_id, branch, len(diff.extra))
    info = api.create_commit(repo_id, operations=ops, commit_message=message, revision=branch,
                             parent_commit=heads[branch], repo_type="model")
    return info.oid


def publish_release(api, release_dir: Path, repo_id: str, revision: str, *,
                    private: bool = False, update_main: bool = False, force: bool = False,
                    retry: RetryPolicy = RetryPolicy(), sleep=time.sleep) -> ReleaseResult:
    """Upload `release_dir` as branch `revision` of model repo `repo_id` and verify it.

    Idempotent: a revision that already holds identical files gets no commit. A revision with
    different files raises ReleaseError unless `force`. Transient Hub errors (network, 429, 5xx)
    are retried with exponential backoff; since every step checks the remote state first, a
    retry (or a re-run after a crash) resumes instead of duplicating work. With `update_main`,
    `main` is then given the same tree by one more commit and verified too.
    """
    local = scan_release_dir(release_dir)

    def attempt() -> ReleaseResult:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = _sync_branch(api, repo_id, revision, local, overwrite=force,
                              message=f"Release {revision}")
        if commit is None:
            logger.info("%s@%s already holds these %d files: no commit made", repo_id,
                        revision, len(local))
        verify_revision(api, repo_id, revision, local)
        main_commit = None
        if update_main:
            main_commit = _sync_branch(api, repo_id, "main", local, overwrite=True,
                                       message=f"Point main at release {revision}")
            verify_revision(api, repo_id, "main", local)
        return ReleaseResult(repo_id, revision, commit, len(local), main_commit, update_main)

    return with_retries(attempt, retry, what=f"release {revision} to {repo_id}", sleep=sleep,
                        error_type=ReleaseError)
