"""The corpus flags shared by `slm tokenizer train` and `slm data prepare`: both read documents
through `tokenizer.corpus.iter_documents`, so they accept the same inputs the same way."""


def add_corpus_arguments(parser, skips_recorded_in: str) -> None:
    """--input, --text-key, --exclude-set, --skip-bad-lines on `parser`."""
    parser.add_argument("--input", nargs="+", required=True, metavar="PATH",
                        help=".txt (one document per file), .jsonl, .jsonl.zst, .parquet files, "
                             "directories or globs")
    parser.add_argument("--text-key", default="text", help="jsonl field / parquet column")
    parser.add_argument("--exclude-set", action="append", default=[], metavar="NAME",
                        help="drop jsonl records whose meta.redpajama_set_name is NAME "
                             "(e.g. RedPajamaGithub); repeatable")
    parser.add_argument("--skip-bad-lines", action="store_true",
                        help=f"skip malformed records (counted per reason in {skips_recorded_in})")
