"""Tests for L{twisted_caps.serving.systemd_sockets}: the activation environment, read."""

from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.serving.systemd_sockets import NONE_INHERITED, ActivatedSockets

PID = 4242


def passed(**environ: str) -> ActivatedSockets:
    return ActivatedSockets.from_environment(environ, PID)


class ActivatedSocketsTests(SynchronousTestCase):
    def test_descriptors_without_names_are_found_by_index(self) -> None:
        sockets = passed(LISTEN_PID=str(PID), LISTEN_FDS="2")
        self.assertEqual(sockets, ActivatedSockets((3, 4), ()))
        self.assertEqual(sockets.descriptor(0, None), 3)
        self.assertEqual(sockets.descriptor(1, None), 4)

    def test_names_find_their_descriptor(self) -> None:
        sockets = passed(LISTEN_PID=str(PID), LISTEN_FDS="2", LISTEN_FDNAMES="caps:admin")
        self.assertEqual(sockets.descriptor(None, "admin"), 4)
        self.assertEqual(sockets.descriptor(0, None), 3)

    def test_another_process_sockets_are_not_ours(self) -> None:
        self.assertEqual(passed(LISTEN_PID="1", LISTEN_FDS="1"), ActivatedSockets())
        self.assertEqual(passed(LISTEN_FDS="1"), ActivatedSockets())

    def test_a_count_that_is_not_ascii_digits_passes_nothing(self) -> None:
        for count in ("", "-1", "1.0", "\u0661", " 1"):
            self.assertEqual(passed(LISTEN_PID=str(PID), LISTEN_FDS=count), ActivatedSockets())

    def test_names_that_do_not_match_the_count_are_unknown(self) -> None:
        sockets = passed(LISTEN_PID=str(PID), LISTEN_FDS="2", LISTEN_FDNAMES="caps")
        self.assertEqual(sockets.names, ())
        self.assertEqual(sockets.descriptor(1, None), 4)

    def test_nothing_inherited_says_how_to_start(self) -> None:
        error = self.assertRaises(ValueError, ActivatedSockets().descriptor, 0, None)
        self.assertEqual(str(error), NONE_INHERITED)

    def test_an_index_past_the_end_names_the_range(self) -> None:
        sockets = passed(LISTEN_PID=str(PID), LISTEN_FDS="2")
        error = self.assertRaises(ValueError, sockets.descriptor, 2, None)
        self.assertEqual(str(error), "no inherited socket at index=2 (2 inherited: index=0 to 1)")

    def test_a_name_without_names_passed_says_so(self) -> None:
        sockets = passed(LISTEN_PID=str(PID), LISTEN_FDS="1")
        error = self.assertRaises(ValueError, sockets.descriptor, None, "caps")
        self.assertIn("passed without names", str(error))
        self.assertIn("use index=", str(error))

    def test_an_unknown_name_lists_the_names(self) -> None:
        sockets = passed(LISTEN_PID=str(PID), LISTEN_FDS="2", LISTEN_FDNAMES="caps:admin")
        error = self.assertRaises(ValueError, sockets.descriptor, None, "web")
        self.assertEqual(str(error), "no inherited socket named 'web' (inherited: caps, admin)")

    def test_index_and_name_together_or_neither_are_refused(self) -> None:
        sockets = passed(LISTEN_PID=str(PID), LISTEN_FDS="1", LISTEN_FDNAMES="caps")
        for index, name in ((0, "caps"), (None, None)):
            error = self.assertRaises(ValueError, sockets.descriptor, index, name)
            self.assertEqual(str(error), "systemd: give index= or name=, one of them")
