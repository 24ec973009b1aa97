# -*- test-case-name: tests.test_check -*-
"""C{python -m twisted_caps.check}: the C{caps-check} command."""

from twisted_caps.check.command import main

if __name__ == "__main__":
    main()
