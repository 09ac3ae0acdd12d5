"""A local, in-memory stand-in for `huggingface_hub.HfApi`: just the methods releases call.

It keeps a git-like history per repository (commits with a parent and a full file tree, branches
pointing at commits), answers with huggingface_hub's own dataclasses (`RepoFile`, `GitRefs`,
`CommitInfo`, ...) and computes sizes, git blob ids and LFS sha256 from the bytes it stores, as
the Hub does. It records every call, and can be told to fail calls, to corrupt a file as it is
committed, or to be slow.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub.hf_api import CommitInfo, GitCommitInfo, GitRefInfo, GitRefs, RepoFile, RepoUrl

ENDPOINT = "https://hub.invalid"
# Stored through LFS, like the Hub's default .gitattributes (+ binary files, + anything > 10 MB).
LFS_SUFFIXES = (".safetensors", ".bin", ".model", ".png", ".pt")
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.model filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str, data: bytes) -> bool:
    return path.endswith(LFS_SUFFIXES) or len(data) > 10 * 2**20


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, bytes]


@dataclass
class Repo:
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def history(self, branch: str) -> list[Commit]:
        """Newest first, like `list_repo_commits`."""
        out, oid = [], self.branches[branch]
        while oid is not None:
            out.append(self.commits[oid])
            oid = self.commits[oid].parent
        return out


class FakeHfApi:
    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.calls: list[tuple[str, dict]] = []
        self._failures: dict[str, list[BaseException]] = {}
        self.corrupt_on_commit: set[str] = set()
        self.commit_delay_s = 0.0
        self.fail_after_commit: list[BaseException] = []  # commit lands, then the reply is lost
        self._lock = threading.Lock()

    # -- test controls -------------------------------------------------------------------
    def fail_next(self, method: str, *errors: BaseException) -> None:
        """The next len(errors) calls of `method` raise these errors (and change nothing)."""
        self._failures.setdefault(method, []).extend(errors)

    def seed_repo(self, repo_id: str, initial_files: dict[str, bytes]) -> None:
        """A repository made elsewhere (e.g. on the website) whose first commit holds these files."""
        repo = Repo(private=False)
        repo.branches["main"] = self._new_commit(repo, None, "initial commit", dict(initial_files))
        self.repos[repo_id] = repo

    def method_calls(self, method: str) -> list[dict]:
        return [kwargs for name, kwargs in self.calls if name == method]

    def branch_files(self, repo_id: str, branch: str) -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return dict(repo.commits[repo.branches[branch]].files)

    def commits_on(self, repo_id: str, branch: str) -> list[Commit]:
        return self.repos[repo_id].history(branch)

    def _enter(self, method: str, **kwargs) -> None:
        with self._lock:
            self.calls.append((method, kwargs))
            pending = self._failures.get(method)
            error = pending.pop(0) if pending else None
        if error is not None:
            raise error

    def _new_commit(self, repo: Repo, parent: str | None, message: str, files: dict) -> str:
        oid = hashlib.sha1(f"{parent}{message}{len(repo.commits)}".encode()).hexdigest()
        repo.commits[oid] = Commit(oid, parent, message, files)
        return oid

    def _repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise KeyError(f"fake hub: no repo {repo_id}")
        return self.repos[repo_id]

    # -- the HfApi surface ---------------------------------------------------------------
    def create_repo(self, repo_id, *, private=None, exist_ok=False, repo_type=None, token=None):
        self._enter("create_repo", repo_id=repo_id, private=private, exist_ok=exist_ok)
        if repo_id in self.repos:
            if not exist_ok:
                raise FileExistsError(repo_id)
        else:
            repo = Repo(private=bool(private))
            repo.branches["main"] = self._new_commit(repo, None, "initial commit",
                                                     {".gitattributes": GITATTRIBUTES})
            self.repos[repo_id] = repo
        return RepoUrl(f"{ENDPOINT}/{repo_id}", endpoint=ENDPOINT)

    def list_repo_refs(self, repo_id, *, repo_type=None, include_pull_requests=False, token=None):
        self._enter("list_repo_refs", repo_id=repo_id)
        repo = self._repo(repo_id)
        return GitRefs(branches=[GitRefInfo(name=n, ref=f"refs/heads/{n}", target_commit=oid)
                                 for n, oid in repo.branches.items()], converts=[], tags=[])

    def list_repo_commits(self, repo_id, *, revision=None, repo_type=None, token=None,
                          formatted=False):
        self._enter("list_repo_commits", repo_id=repo_id, revision=revision)
        now = datetime.now(timezone.utc)
        return [GitCommitInfo(commit_id=c.oid, authors=["fake"], created_at=now, title=c.message,
                              message="", formatted_title=None, formatted_message=None)
                for c in self._repo(repo_id).history(revision or "main")]

    def create_branch(self, repo_id, *, branch, revision=None, exist_ok=False, repo_type=None,
                      token=None):
        self._enter("create_branch", repo_id=repo_id, branch=branch, revision=revision)
        repo = self._repo(repo_id)
        if branch in repo.branches:
            if not exist_ok:
                raise FileExistsError(branch)
            return
        start = repo.branches.get(revision or "main", revision)
        if start not in repo.commits:
            raise KeyError(f"fake hub: unknown revision {revision}")
        repo.branches[branch] = start

    def create_commit(self, repo_id, operations, *, commit_message, commit_description=None,
                      revision=None, parent_commit=None, repo_type=None, token=None, **kwargs):
        operations = list(operations)
        self._enter("create_commit", repo_id=repo_id, revision=revision,
                    paths=[op.path_in_repo for op in operations], parent_commit=parent_commit)
        time.sleep(self.commit_delay_s)
        repo = self._repo(repo_id)
        branch = revision or "main"
        head = repo.branches[branch]
        if parent_commit is not None and parent_commit != head:
            raise RuntimeError("fake hub: parent_commit is not the branch head (412)")
        files = dict(repo.commits[head].files)
        for op in operations:
            if isinstance(op, CommitOperationAdd):
                source = op.path_or_fileobj
                data = source if isinstance(source, bytes) else Path(source).read_bytes()
                if op.path_in_repo in self.corrupt_on_commit:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                files[op.path_in_repo] = data
            elif isinstance(op, CommitOperationDelete):
                files.pop(op.path_in_repo)
        repo.branches[branch] = oid = self._new_commit(repo, head, commit_message, files)
        if self.fail_after_commit:
            raise self.fail_after_commit.pop(0)
        return CommitInfo(commit_url=f"{ENDPOINT}/{repo_id}/commit/{oid}",
                          commit_message=commit_message, commit_description="", oid=oid,
                          _endpoint=ENDPOINT)

    def list_repo_tree(self, repo_id, path_in_repo=None, *, recursive=False, expand=False,
                       revision=None, repo_type=None, token=None):
        self._enter("list_repo_tree", repo_id=repo_id, revision=revision)
        files = self.branch_files(repo_id, revision or "main")
        out = []
        for path, data in sorted(files.items()):
            if is_lfs(path, data):
                sha256 = hashlib.sha256(data).hexdigest()
                pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\n"
                           f"size {len(data)}\n").encode()
                out.append(RepoFile(path=path, size=len(data), oid=git_blob_id(pointer),
                                    lfs={"size": len(data), "oid": sha256,
                                         "pointerSize": len(pointer)}))
            else:
                out.append(RepoFile(path=path, size=len(data), oid=git_blob_id(data)))
        return iter(out)


# One instance a YAML config can name (`api_factory: tests.release.fake_hub.shared_fake_hub`),
# for runs started through the real `slm pretrain` command line inside the test process.
SHARED = FakeHfApi()


def shared_fake_hub() -> FakeHfApi:
    return SHARED
