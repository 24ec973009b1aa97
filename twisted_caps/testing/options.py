# -*- test-case-name: tests.test_testing -*-
"""
The daemon's options for test servers, so a test server is configured exactly
as C{twistd caps} would be.
"""

from collections.abc import Iterable

from twisted_caps.operating.tap import Options
from twisted_caps.serving.config import CapsConfig

#: What every test server starts with: loopback only, on a free port. Later
#: arguments win, so C{"-p", "1200"} or C{"-i", "::1"} override them.
LOOPBACK_DEFAULTS = ("-i", "127.0.0.1", "-p", "0")

OptionValue = bool | int | float | str | Iterable[str] | None


def caps_argv(*argv: str, **options: OptionValue) -> list[str]:
    """
    The C{twistd caps} command line of a test server: the loopback
    defaults, then C{argv}, then C{options} as L{option_words}.
    """
    return [*LOOPBACK_DEFAULTS, *argv, *option_words(**options)]


def option_words(**options: OptionValue) -> list[str]:
    """
    Turn daemon options given as keywords into command-line words.

    Keyword names are option names with C{_} for C{-}: C{once=True} gives
    C{--once}, C{max_connections=5} gives C{--max-connections=5}, a list
    repeats the option (C{tcp=["tcp:0", "unix:/tmp/s"]}), and C{False} or
    C{None} leave it out. Options this kit does not know are passed through,
    so options added to the daemon work here unchanged.
    """
    words: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            words.append(flag)
        elif isinstance(value, str | int | float):
            words.append(f"{flag}={value}")
        else:
            words.extend(f"{flag}={item}" for item in value)
    return words


def caps_config(*argv: str, **options: OptionValue) -> CapsConfig:
    """
    Parse L{caps_argv} with the daemon's own C{Options}.

    @raise ValueError: with the daemon's one-line message, for options the
        daemon would refuse.
    """
    parsed = Options()
    try:
        parsed.parseOptions(caps_argv(*argv, **options))
    except SystemExit as refusal:
        if not isinstance(refusal.code, str):
            raise  # --help or --version: printed, and not a refusal
        raise ValueError(refusal.code) from None
    config: CapsConfig = parsed.config
    return config
