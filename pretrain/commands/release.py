"""`slm release --checkpoint PATH --repo ORG/NAME [...]`: export a checkpoint and publish it to
the Hugging Face Hub as a revision (branch) of one commit, verified file by file."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "release", help="export a checkpoint and upload it to the Hub as a revision",
        description="Export a checkpoint (also a sharded one) to a Hugging Face directory with a "
                    "model card, upload it as branch REVISION of ORG/NAME in one commit, and "
                    "verify every remote file's size and sha256. Re-running is safe: a revision "
                    "that already holds the same files gets no new commit. The token comes from "
                    "HF_TOKEN or `huggingface-cli login`.")
    p.add_argument("--checkpoint", required=True, type=Path,
                   help="checkpoint directory (or a run directory: its newest checkpoint)")
    p.add_argument("--repo", required=True, help="model repository ORG/NAME (created if missing)")
    p.add_argument("--revision", default=None,
                   help="branch name (default: step-<step>-tokens-<tokens>, e.g. "
                        "step-480000-tokens-1007B)")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--update-main", action="store_true",
                   help="also make main hold this release (a commit to main with the same files)")
    p.add_argument("--force", action="store_true",
                   help="replace the files of a revision that exists with different content")
    p.add_argument("--dry-run", type=Path, default=None, metavar="DIR",
                   help="write the release directory to DIR and upload nothing (no token needed)")
    p.add_argument("--tokenizer", type=Path, default=None, metavar="DIR",
                   help="tokenizer to ship (default: the one recorded in the checkpoint)")
    p.add_argument("--license", default="apache-2.0", help="model card license (default apache-2.0)")
    p.add_argument("--dataset", action="append", default=[], metavar="ID",
                   help="Hub dataset id trained on, for the model card (repeatable)")
    p.add_argument("--language", action="append", default=None, metavar="CODE",
                   help="language code for the model card (repeatable; default en)")
    p.add_argument("--tag", action="append", default=[], help="extra model card tag (repeatable)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pretrain.training.checkpoint.layout import find_checkpoint_dir
    from pretrain.release.card import CardMetadata
    from pretrain.release.release import hub_api, release_checkpoint
    from pretrain.release.stage import check_repo_id, check_revision, stage_release

    import logging

    # Progress goes to stdout below; on stderr a refused release is one `error:` line
    # (retry warnings still show; `slm -v release` shows every step).
    if not args.verbose:
        logging.getLogger("pretrain.release").setLevel(logging.WARNING)
    # Every check that needs no work comes first: a mistake costs a second and uploads nothing.
    check_repo_id(args.repo)
    if args.revision is not None:
        check_revision(args.revision)
    find_checkpoint_dir(args.checkpoint)
    card = CardMetadata(license=args.license, datasets=tuple(args.dataset),
                        languages=tuple(args.language or ("en",)), tags=tuple(args.tag))
    if args.dry_run is not None:
        staged = stage_release(args.checkpoint, args.dry_run, repo_id=args.repo,
                               revision=args.revision, tokenizer_dir=args.tokenizer, card=card)
        files = sorted(p.name for p in staged.directory.iterdir())
        print(f"dry run: release {args.repo}@{staged.revision} written to {staged.directory} "
              f"({len(files)} files: {', '.join(files)}); nothing uploaded")
        return 0
    api = hub_api()
    print(f"exporting {args.checkpoint} and uploading it to {args.repo} ...", flush=True)
    result = release_checkpoint(args.checkpoint, args.repo, api=api, revision=args.revision,
                                tokenizer_dir=args.tokenizer, card=card, private=args.private,
                                update_main=args.update_main, force=args.force)
    url = f"https://huggingface.co/{result.repo_id}/tree/{result.revision}"
    if result.commit is None:
        print(f"{result.repo_id}@{result.revision} already holds these {result.files} files: "
              f"no commit made ({url})")
    else:
        print(f"released {result.repo_id}@{result.revision}: commit {result.commit[:12]}, "
              f"{result.files} files ({url})")
    print(f"verified: all {result.files} remote files match the local export (size, and sha256 "
          f"for LFS files / git blob sha1 for the others)")
    if result.main_updated:
        print("main now holds this release" + (" (already did)" if result.main_commit is None
                                               else f" (commit {result.main_commit[:12]})"))
    return 0
