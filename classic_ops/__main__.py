"""Command line: `classic-ops info` and `classic-ops demo` (also `python -m classic_ops`)."""
import argparse

import torch


def main(argv=None):
    parser = argparse.ArgumentParser(prog="classic-ops", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("info", help="what this build holds")
    demo = commands.add_parser("demo", help="every op against native torch: max error and time")
    demo.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    import classic_ops

    print(classic_ops.build_info())
    if args.command in (None, "demo"):
        from . import demo as demo_module

        demo_module.run(device=getattr(args, "device", "cpu"))


if __name__ == "__main__":
    main()
