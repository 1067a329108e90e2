"""``ablang fmt [--check] FILE...``: rewrite studies in the canonical layout (``ablang.fmt``).

Exit status: 0 when every file is (now) formatted; with ``--check``, 1 when a file would change
(nothing is written); 2 when a file cannot be read or does not parse (it is left as it is).
"""

from __future__ import annotations

from pathlib import Path

from ablang.commands.check import Checked, print_errors
from ablang.errors import AblangError, AblangErrors
from ablang.fmt import format_text
from ablang.fsio import atomic_write_text
from ablang.parse import decode


def add_arguments(parser) -> None:
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="study files (.abl) to format in place"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 and name the files that would change",
    )


def run(args) -> int:
    status = 0
    for name in args.files:
        path = Path(name)
        try:
            data = path.read_bytes()
        except OSError as e:
            print_errors(
                Checked(
                    name,
                    errors=(
                        AblangError(
                            f"cannot read the file: {e.strerror or e}", code="io", path=name
                        ),
                    ),
                )
            )
            status = 2
            continue
        try:
            text = decode(data, name)
            new = format_text(text, name)
        except AblangErrors as e:
            print_errors(
                Checked(name, data.decode("utf-8", errors="replace"), errors=tuple(e.errors))
            )
            status = 2
            continue
        if new.encode("utf-8") == data:
            continue
        if args.check:
            print(f"would reformat {name}")
            status = max(status, 1)
        else:
            try:
                atomic_write_text(path, new)
            except AblangError as e:  # disk full, read-only: the study is left as it was
                print_errors(Checked(name, errors=(e,)))
                status = 2
                continue
            print(f"reformatted {name}")
    return status
