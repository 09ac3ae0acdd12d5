"""One module per `slm` subcommand; each defines `add_parser(subparsers)` setting `func`."""
