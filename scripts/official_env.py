"""Helpers for the fixture scripts (`make_omni_fixtures.py`, `make_larp_fixtures.py`): import an official
repository's model code from a path the user gives, with the packages it imports but a forward pass never uses
replaced by empty stand-ins. Nothing here is needed at test time; the scripts run once, in a throwaway
environment, and write small fixtures under tests/fixtures/.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from pathlib import Path

from torch import nn


class _Permissive(type):
    """Metaclass of the placeholders: any class attribute is another placeholder (enum members, constants)."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(name)


def _placeholder(name: str) -> type:
    return _Permissive(name, (nn.Module,), {})


class _StubModule(types.ModuleType):
    """A module whose every missing attribute is a fresh placeholder class (an `nn.Module`, so that a class
    deriving from a stubbed base, such as a LightningModule, still builds)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _placeholder(name)
        setattr(self, name, value)
        return value


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots: set[str]) -> None:
        self.roots = roots

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module) -> None:
        pass


def stub_packages(*names: str) -> None:
    """Make `import NAME` (and any NAME.sub) give empty stand-ins for these top-level packages."""
    for name in names:
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, _StubFinder(set(names)))


def namespace_package(name: str, path: Path) -> None:
    """Register `name` as a package rooted at `path` without running its __init__.py (which often imports a
    whole training stack), so that its submodules import on their own."""
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    sys.modules[name] = module
