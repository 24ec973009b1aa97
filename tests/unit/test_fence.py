"""
The fence around Twisted's internals: no module of twisted_caps outside
C{twisted_caps/_twisted/} reads a name Twisted does not publish.

The rule, checked on each module's syntax tree (and, for overrides, on its
classes), for a name that starts with one underscore (dunders are public):

  - importing a Twisted module on a path with such a name
    (C{from twisted.protocols.haproxy._wrapper import ...},
    C{import twisted.internet._sslverify}, C{from twisted.internet import _sslverify});
  - reading or writing C{something._name} (or C{getattr(something, "_name")})
    on anything but C{self} or C{cls}, unless the module itself defines
    C{_name}, and C{super()._name} always: whatever is not the module's
    own is someone else's private;
  - in a class with a Twisted base, C{self._name} that the class does not
    define, and defining a C{_name} that a Twisted base already has (an
    override of a private method).

Public names Twisted does not document (C{port.socket}) are beyond a syntax
check; the inventory in L{twisted_caps._twisted} lists those that are read.
"""

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import twisted_caps

PACKAGE = Path(twisted_caps.__file__).parent
FENCE = PACKAGE / "_twisted"


@dataclass(frozen=True)
class PrivateRead:
    """One place where a module reaches a private name it does not own."""

    path: str
    line: int
    what: str


def is_private(name: str) -> bool:
    """A single-underscore name: private by Python's convention."""
    return name.startswith("_") and not name.startswith("__")


def is_self(attribute: ast.Attribute) -> bool:
    """Whether C{attribute} is reached on C{self} or C{cls}."""
    return isinstance(attribute.value, ast.Name) and attribute.value.id in ("self", "cls")


#: The built-ins that reach an attribute by its name as a string.
REFLECTION = ("getattr", "hasattr", "setattr", "delattr")


def reflected_name(call: ast.Call) -> str | None:
    """The attribute name C{getattr(obj, "name")} and its kin spell out, if a literal."""
    if len(call.args) < 2 or not isinstance(call.args[1], ast.Constant):
        return None
    name = call.args[1].value
    return name if isinstance(name, str) else None


def is_twisted(module: str | None) -> bool:
    """Whether C{module} is Twisted or part of it."""
    return module is not None and (module == "twisted" or module.startswith("twisted."))


def defined_names(tree: ast.AST) -> set[str]:
    """Every name a module defines: functions, classes, assignments, attributes it sets."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and is_self(node):
            names.add(node.attr)
    return names


def twisted_imports(tree: ast.AST) -> set[str]:
    """The local names a module binds to Twisted modules or their contents."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and is_twisted(node.module):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(
                (alias.asname or alias.name).split(".")[0]
                for alias in node.names
                if is_twisted(alias.name)
            )
    return names


def base_root(base: ast.expr) -> str | None:
    """The first name of a base class expression (C{tcp} in C{tcp.Port})."""
    while isinstance(base, ast.Attribute):
        base = base.value
    return base.id if isinstance(base, ast.Name) else None


def private_reads(path: Path, module: str | None = None) -> list[PrivateRead]:
    """
    Where the module at C{path} reaches a private name of Twisted's (see the
    module docstring for the rule); C{module}, its import name, lets the
    check look at its classes' Twisted bases for overrides.
    """
    tree = ast.parse(path.read_text(), str(path))
    own = defined_names(tree)
    from_twisted = twisted_imports(tree)
    found: list[PrivateRead] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(PrivateRead(str(path), getattr(node, "lineno", 0), what))

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and is_twisted(node.module):
            assert node.module is not None
            if any(is_private(part) for part in node.module.split(".")):
                report(node, f"from {node.module} import")
            for alias in node.names:
                if is_private(alias.name):
                    report(node, f"from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if is_twisted(alias.name) and any(map(is_private, alias.name.split("."))):
                    report(node, f"import {alias.name}")
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            value = node.value
            if isinstance(value, ast.Call) and ast.unparse(value.func) == "super":
                report(node, f"super().{node.attr}")
            elif not is_self(node) and node.attr not in own:  # self: checked per class
                report(node, f".{node.attr}")
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in REFLECTION:
            name = reflected_name(node)
            if name is not None and is_private(name) and name not in own:
                report(node, f'{ast.unparse(node.func)}(..., "{name}")')
        elif isinstance(node, ast.ClassDef) and any(
            base_root(base) in from_twisted for base in node.bases
        ):
            found.extend(_subclass_reads(path, module, node))
    return found


def _subclass_reads(path: Path, module: str | None, cls: ast.ClassDef) -> list[PrivateRead]:
    """In a subclass of a Twisted class: private names it inherits rather than owns."""
    own = defined_names(cls)
    found = [
        PrivateRead(str(path), node.lineno, f"self.{node.attr} (inherited)")
        for node in ast.walk(cls)
        if isinstance(node, ast.Attribute)
        and is_private(node.attr)
        and is_self(node)
        and node.attr not in own
    ]
    if module is not None:
        built = getattr(importlib.import_module(module), cls.name)
        twisted_bases = [base for base in built.__mro__[1:] if is_twisted(base.__module__)]
        for name in sorted(own):
            if is_private(name) and any(hasattr(base, name) for base in twisted_bases):
                found.append(PrivateRead(str(path), cls.lineno, f"{cls.name}.{name} (override)"))
    return found


def package_modules(root: Path) -> list[tuple[Path, str]]:
    """Every module under C{root}, with its import name."""
    return [
        (path, ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        for path in sorted(root.rglob("*.py"))
    ]


#: Planted reads the check must find, one a line of source.
PLANTED = {
    "private module": "from twisted.protocols.haproxy._wrapper import HAProxyProtocolWrapper",
    "private name from a module": "from twisted.internet import _sslverify",
    "import of a private module": "import twisted.internet._sslverify",
    "attribute of a Twisted object": "def f(reactor):\n    return reactor._poller",
    "getattr with a private name": "def f(t):\n    return getattr(t, '_tempDataLen')",
    "private class method": (
        "from twisted.internet import tcp\n"
        "def f(r, fd, fam, fac):\n"
        "    return tcp.Port._fromListeningDescriptor(r, fd, fam, fac)"
    ),
    "super's private": ("class T:\n    def _shutdownTLS(self):\n        super()._shutdownTLS()"),
    "inherited private": (
        "from twisted.protocols.tls import BufferingTLSTransport\n"
        "class T(BufferingTLSTransport):\n"
        "    def close(self):\n"
        "        return self._tlsConnection.shutdown()"
    ),
}


class FenceTests(SynchronousTestCase):
    def test_no_module_outside_the_fence_reads_a_private_twisted_name(self) -> None:
        """Only C{twisted_caps/_twisted/} may read names Twisted does not publish."""
        outside = [(p, m) for p, m in package_modules(PACKAGE) if FENCE not in p.parents]
        self.assertGreater(len(outside), 20)
        found = [read for path, module in outside for read in private_reads(path, module)]
        self.assertEqual(found, [])

    def test_every_module_inside_the_fence_is_caught(self) -> None:
        """
        The check finds what the fenced modules read, so it would find the
        same outside (a check that finds nothing anywhere proves nothing).
        """
        caught = {
            path.stem for path, module in package_modules(FENCE) if private_reads(path, module)
        }
        self.assertEqual(
            caught,
            {
                "accept_errors",
                "compact",
                "dispatch",
                "eager_read",
                "immediate",
                "lean_server",
                "shared_accept",
                "startup_errors",
                "tls",
            },
        )

    def test_planted_private_reads_are_caught(self) -> None:
        """Each kind of private read, planted in a module, is reported with its line."""
        for kind, source in PLANTED.items():
            planted = Path(self.mktemp() + ".py")
            planted.write_text(source + "\n")
            found = private_reads(planted)
            self.assertTrue(found, kind)
            self.assertEqual(found[0].line, source.count("\n") + 1, kind)

    def test_own_private_names_and_dunders_pass(self) -> None:
        """A module's own private names, and dunders, are not Twisted's."""
        planted = Path(self.mktemp() + ".py")
        planted.write_text(
            "from twisted.internet.protocol import Protocol\n"
            "_TABLE = {}\n"
            "class P(Protocol):\n"
            "    _count = 0\n"
            "    def connectionMade(self):\n"
            "        self._peer = self.transport.getPeer()\n"
            "        self._count += len(_TABLE) + len(self.__dict__)\n"
            "def f(p):\n"
            "    return p._peer, type(p).__name__\n"
        )
        self.assertEqual(private_reads(planted), [])

    def test_overriding_a_twisted_private_method_is_caught(self) -> None:
        """A subclass that redefines a private method of its Twisted base is reported."""
        found = private_reads(FENCE / "tls.py", "twisted_caps._twisted.tls")
        self.assertIn("HalfCloseTLSTransport._shutdownTLS (override)", [r.what for r in found])
