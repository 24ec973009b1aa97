"""
An autograder: grade the server program named on the command line with
caps-check's lecture profile, print the feedback, and write Gradescope's
results.json (tcp-concurrent is worth 3 points, every other check 1).
Run with: python autograder.py student_server.py [results.json]
"""

import json
import sys

from twisted_caps.check import grade_server

WEIGHTS = {"tcp-concurrent": 3.0}

server_program = sys.argv[1]
results_path = sys.argv[2] if len(sys.argv) > 2 else "results.json"
# The student's server takes its port as its first argument.
report = grade_server([sys.executable, server_program, "{port}"], profile="lecture")
print(report.text(), end="")
with open(results_path, "w", encoding="utf-8") as results:
    json.dump(report.to_gradescope(WEIGHTS), results, indent=2)
