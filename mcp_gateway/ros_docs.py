"""Comments and constants of ROS interface files, for tool schema descriptions.

A model fills a goal far better from "tolerance of the goal position, in meters" than from
"double", and an error code means something only next to its constants. The installed
packages ship their interface definitions (`share/<pkg>/msg/*.msg`, `action/*.action`):
this module reads them. A package without them (or a comment-less file) simply gives no
documentation; nothing here is required for a schema to be correct.

Conventions read (those of the .msg format): a comment block right above a field, or a
trailing comment on its line, documents the field; the file's leading comment block
(before the first field, ended by a blank line or starting "This ...") documents the
message; `TYPE NAME=VALUE`
lines are constants. An .action file's sections (Goal, Result, Feedback) are split at `---`.
"""
from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

MAX_TEXT = 240  # characters of one description: enough to explain, little to pay per call
_FIELD_RE = re.compile(r'^([A-Za-z][\w/]*(?:<=\d+)?(?:\[[^\]]*\])?)\s+([A-Za-z]\w*)(.*)$')
_CONSTANT_RE = re.compile(r'^[A-Za-z][\w/]*\s+([A-Z][A-Z0-9_]*)\s*=\s*([^#]*?)\s*(?:#.*)?$')
_SECTIONS = {'Goal': 0, 'Result': 1, 'Feedback': 2}
# "#goal definition" and the like head an .action section: they describe no field.
_SECTION_HEADER = re.compile(r'^(goal|result|feedback|request|response)( definition)?:?$',
                             re.IGNORECASE)


@dataclass
class InterfaceDocs:
    """What an interface file says about one message: its own text, fields, constants."""

    description: str = ''
    fields: dict[str, str] = field(default_factory=dict)
    constants: list[tuple[str, str]] = field(default_factory=list)


def _clip(text: str) -> str:
    text = ' '.join(text.split())
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 3].rstrip() + '...'


def _share_dirs(package: str) -> list[Path]:
    """Where `share/<package>` may be: the ament prefixes, this interpreter's prefix, and
    beside the package's Python module (wheels install share/ under the environment).
    """
    roots = [Path(p) for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    roots.append(Path(sys.prefix))
    module = sys.modules.get(package)
    if module is not None and getattr(module, '__file__', None):
        roots.append(Path(module.__file__).resolve().parents[4])
    return [root / 'share' / package for root in roots]


@functools.lru_cache(maxsize=512)
def interface_docs(full_name: str) -> InterfaceDocs:
    """Docs of 'pkg/msg/Type' or 'pkg/action/Type_Goal' (`_Result`, `_Feedback`)."""
    package, kind, name = full_name.split('/')
    section = None
    if kind == 'action':
        name, _, part = name.rpartition('_')
        section = _SECTIONS.get(part)
        if section is None:
            return InterfaceDocs()
    text = _read(package, kind, name)
    if text is None:
        return InterfaceDocs()
    if section is not None:
        parts = re.split(r'^---\s*$', text, flags=re.MULTILINE)
        if section >= len(parts):
            return InterfaceDocs()
        text = parts[section]
    return parse_interface(text)


def _read(package: str, kind: str, name: str) -> Optional[str]:
    for share in _share_dirs(package):
        path = share / kind / f'{name}.{kind}'
        try:
            return path.read_text(encoding='utf-8')
        except OSError:
            continue
    return None


def parse_interface(text: str) -> InterfaceDocs:
    """Docs of one message definition (one section of a .srv/.action)."""
    docs = InterfaceDocs()
    pending: list[str] = []
    seen_field = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            if not seen_field and pending and not docs.description:
                docs.description = _clip(' '.join(pending))
            pending = []
            continue
        if line.startswith('#'):
            comment = line.lstrip('#').strip()
            if not _SECTION_HEADER.match(comment):
                pending.append(comment)
            continue
        code, _, trailing = line.partition('#')
        constant = _CONSTANT_RE.match(line)
        if constant:
            docs.constants.append((constant.group(1), constant.group(2)))
            pending = []
            seen_field = True
            continue
        match = _FIELD_RE.match(code.strip())
        if match:
            if not seen_field and pending and not docs.description \
                    and pending[0].startswith('This '):
                # "# This contains the position of a point..." right above Point's x: the
                # file's own description, not x's.
                docs.description = _clip(' '.join(pending))
                pending = []
            comment = ' '.join(pending + ([trailing.strip()] if trailing.strip() else []))
            if comment:
                docs.fields[match.group(2)] = _clip(comment)
            seen_field = True
        pending = []
    return docs
