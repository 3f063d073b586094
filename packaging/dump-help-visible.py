#!/usr/bin/env python3
"""Runs `BINARY --experimental-dump-help` and drops the subcommands that
--help hides (shouldDisplay: false) and `help` itself, so that swift-argument-parser's
generate-manual documents only the commands users run. Usage: as the tool
argument of generate-manual, through a wrapper: dump-help-visible.py BINARY ARGS..."""
import json
import subprocess
import sys


def visible(command):
    subs = command.get("subcommands")
    if subs:
        command["subcommands"] = [
            visible(s) for s in subs if s.get("shouldDisplay", True) and s.get("commandName") != "help"
        ]
    return command


def main():
    binary, args = sys.argv[1], sys.argv[2:]
    out = subprocess.run([binary, *args], check=True, capture_output=True).stdout
    if "--experimental-dump-help" not in args:
        sys.stdout.buffer.write(out)
        return
    doc = json.loads(out)
    doc["command"] = visible(doc["command"])
    json.dump(doc, sys.stdout)


if __name__ == "__main__":
    main()
