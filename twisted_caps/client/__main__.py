# -*- test-case-name: tests.test_client -*-
"""C{python -m twisted_caps.client}: the C{caps-client} command."""

from twisted_caps.client.command import main

if __name__ == "__main__":
    main()
