# -*- test-case-name: tests.test_layout -*-
"""
The logic of caps with no reactor and no socket: the transform, the PROXY
header parser, limits and their reasons, option values and help text.
Everything above imports from here; nothing here imports from above.
"""
