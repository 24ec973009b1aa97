# -*- test-case-name: tests.test_logs -*-
"""
Log observers for log shippers: one JSON object per event, per line.

C{twist --log-format json caps} is Twisted's own way; for C{twistd}, use
C{twistd --logger twisted_caps.logs.json_observer -n caps}.
"""

import sys

from twisted.logger import ILogObserver, jsonFileLogObserver


def json_observer() -> ILogObserver:
    """Write every event to standard output as one line of JSON."""
    return jsonFileLogObserver(sys.stdout, recordSeparator="")
