"""How a question is written compactly into the store, and read back exactly as it was asked.

A closed-set question at 200 classes carries the whole class list twice: in its prompt and in its
detail's `order` (the shuffled list). Written plainly that is about 8.5 KB a question. Here:

- a detail list whose items are all class names of the run (closed-set's `order`) is stored as
  indices into the run's class list, packed one or two bytes each and base64-encoded inside the
  detail JSON as `{"~classes": "…"}`;
- a prompt that contains such a list, joined by ", ", is stored as its template (the list replaced
  by a placeholder that names the detail key), so every question of a run shares one prompt text,
  which the store keeps once in its `prompts` table. A prompt that itself holds the placeholder
  character is not a template: the store keeps it in the question's own row, never expanded.

Both are checked when written: a prompt or list that would not come back identical is stored as
it is. `Question` objects read back are identical to the ones written.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from operator import itemgetter
from collections.abc import Sequence
from typing import Any

PACKED = "~classes"
"""The detail key of a packed list of class names (a one-key object in place of the list)."""
HOLE = "\x00"
"""Delimits a placeholder `\\0KEY\\0` in a stored prompt template: a character no prompt holds."""
SEPARATOR = ", "
"""How strategies join a class list into a prompt (`closed-set`: "Choose one from {classes}")."""
_PLACEHOLDER = re.compile(f"{HOLE}([^{HOLE}]*){HOLE}")


class Codec:
    """Packs and unpacks the class-name lists and prompts of one run (its class list is fixed)."""

    def __init__(self, classes: Sequence[str] | None) -> None:
        self.classes = list(classes or [])
        self.index = {name: i for i, name in enumerate(self.classes)}
        self.width = 1 if len(self.classes) <= 256 else 2

    def pack(self, prompt: str | None, detail: dict[str, Any] | None) -> tuple[str | None, str | None]:
        """The prompt (or its template) and the detail JSON as they are stored."""
        if detail is None:
            return prompt, None
        packed: dict[str, Any] = {}
        lists: dict[str, list[str]] = {}
        for key, value in detail.items():
            if self._packable(value):
                packed[key] = {PACKED: self._encode(value)}
                lists[key] = value
            else:
                packed[key] = value
        if prompt is not None and lists:
            prompt = self._template(prompt, lists)
        return prompt, json.dumps(packed, default=float)

    def unpack(self, prompt: str | None, detail: str | None,
               template: bool) -> tuple[str | None, dict[str, Any] | None]:
        """The prompt and detail exactly as they were written; `template`: the prompt came from
        the prompts table, so its placeholders are filled."""
        if not detail:
            return prompt, None
        value = json.loads(detail)
        for key, item in value.items():
            if isinstance(item, dict) and len(item) == 1 and PACKED in item:
                value[key] = self._decode(item[PACKED])
        if template and prompt is not None and HOLE in prompt:
            prompt = _PLACEHOLDER.sub(lambda match: SEPARATOR.join(value[match.group(1)]), prompt)
        return prompt, value

    def _packable(self, value: Any) -> bool:
        return (isinstance(value, list) and len(value) >= 2 and len(self.classes) <= 65536
                and all(isinstance(item, str) and item in self.index for item in value))

    def _encode(self, names: list[str]) -> str:
        indices = [self.index[name] for name in names]
        data = bytes(indices) if self.width == 1 else struct.pack(f"<{len(indices)}H", *indices)
        return base64.b64encode(data).decode("ascii")

    def _decode(self, text: str) -> list[str]:
        """Read for every question of a report, so done by C-level calls, not a Python loop."""
        data = base64.b64decode(text)
        indices = data if self.width == 1 else struct.unpack(f"<{len(data) // 2}H", data)
        return list(itemgetter(*indices)(self.classes))

    def _template(self, prompt: str, lists: dict[str, list[str]]) -> str:
        if HOLE in prompt:
            return prompt
        template = prompt
        for key, names in lists.items():
            if HOLE in key:
                continue
            joined = SEPARATOR.join(names)
            if joined in template:
                template = template.replace(joined, f"{HOLE}{key}{HOLE}")
        restored = _PLACEHOLDER.sub(lambda match: SEPARATOR.join(lists[match.group(1)]), template)
        return template if restored == prompt else prompt
