"""The chatbot's decision-tree engine: flows are data, turns are pure functions.

A flow file (YAML) holds nodes with a prompt, numbered options and their targets,
`next` for nodes that move on by themselves, terminal nodes, and events to emit on
entering a node. `load_flow` validates it (unknown targets, unreachable nodes and
duplicate ids are errors). `step(flow, state, text)` returns the new state, the
bot's messages and the events; it never raises on customer input.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

FLOWS_DIR = Path(__file__).parent / "flows"
MAX_AUTO_STEPS = 20


class Option(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1)
    next: str
    synonyms: list[str] = Field(default_factory=list)


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    prompt: str = Field(min_length=1)
    options: list[Option] = Field(default_factory=list)
    next: str | None = None
    terminal: bool = False
    events: list[str] = Field(default_factory=list)
    entry: bool = False  # entered from outside the flow (e.g. by a marketing message)

    @model_validator(mode="after")
    def _one_way_out(self) -> Self:
        ways = sum([bool(self.options), self.next is not None, self.terminal])
        if ways != 1:
            raise ValueError(f"node {self.id!r}: needs exactly one of options, next, terminal")
        return self


class Flow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str
    nodes: list[Node] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        ids = [node.id for node in self.nodes]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate node ids: {', '.join(duplicates)}")
        known = set(ids)
        if self.start not in known:
            raise ValueError(f"start node {self.start!r} does not exist")
        for node in self.nodes:
            targets = [o.next for o in node.options] + ([node.next] if node.next else [])
            for target in targets:
                if target not in known:
                    raise ValueError(f"node {node.id!r} points at unknown node {target!r}")
        reachable = self._reachable()
        unreachable = [i for i in ids if i not in reachable]
        if unreachable:
            raise ValueError(f"unreachable nodes: {', '.join(unreachable)}")
        return self

    def _reachable(self) -> set[str]:
        by_id = {node.id: node for node in self.nodes}
        seen: set[str] = set()
        todo = [self.start] + [node.id for node in self.nodes if node.entry]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            node = by_id[current]
            todo += [o.next for o in node.options] + ([node.next] if node.next else [])
        return seen

    def node(self, node_id: str) -> Node:
        return self._index()[node_id]

    def _index(self) -> dict[str, Node]:
        index = self.__dict__.get("_by_id")
        if index is None:
            index = {node.id: node for node in self.nodes}
            self.__dict__["_by_id"] = index
        return index


@cache
def load_flow(name: str = "operator") -> Flow:
    """A flow from app/flows/<name>.yaml, validated (cached per process)."""
    return parse_flow((FLOWS_DIR / f"{name}.yaml").read_text())


def parse_flow(text: str) -> Flow:
    return Flow.model_validate(yaml.safe_load(text))


@dataclass
class BotMessage:
    text: str
    options: list[str] = field(default_factory=list)
    node: str = ""


@dataclass
class Turn:
    state: dict[str, Any]
    messages: list[BotMessage]
    events: list[str]


def normalise(text: str) -> str:
    """Lower case, no accents, no surrounding punctuation or spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    plain = re.sub(r"\s+", " ", plain).strip()
    return plain.strip(" .!?,;:)(-")


def match_option(node: Node, text: str) -> Option | None:
    said = normalise(text)
    if not said:
        return None
    if said.isdigit():
        index = int(said) - 1
        return node.options[index] if 0 <= index < len(node.options) else None
    for option in node.options:
        words = [option.label, *option.synonyms]
        if said in {normalise(word) for word in words}:
            return option
    return None


def _enter(flow: Flow, node_id: str, extra: dict[str, Any] | None = None) -> Turn:
    """Enter a node and follow `next` links; collect messages and events."""
    messages, events = [], []
    current = flow.node(node_id)
    for _ in range(MAX_AUTO_STEPS):
        messages.append(BotMessage(current.prompt, [o.label for o in current.options],
                                   current.id))
        events += current.events
        if current.next is None:
            break
        current = flow.node(current.next)
    state = {"node": current.id, "ended": current.terminal, **(extra or {})}
    return Turn(state, messages, events)


def start(flow: Flow) -> Turn:
    return _enter(flow, flow.start)


def enter(flow: Flow, node_id: str, **extra: Any) -> Turn:
    """Put a conversation at an entry node (a counter-offer, for instance)."""
    return _enter(flow, node_id, extra)


def step(flow: Flow, state: dict[str, Any] | None, text: str) -> Turn:
    """One customer turn. Unknown input re-prompts with the options; never raises."""
    if not state or state.get("node") not in flow._index() or state.get("ended"):
        return start(flow)  # a new conversation after the last one ended
    node = flow.node(state["node"])
    option = match_option(node, text)
    if option is None:
        choices = "  ".join(f"{n}. {o.label}" for n, o in enumerate(node.options, 1))
        hint = BotMessage(f"Sorry, I didn't get that. Please answer with a number: {choices}",
                          [o.label for o in node.options], node.id)
        return Turn(dict(state), [hint], [])
    carried = {k: v for k, v in state.items() if k not in ("node", "ended")}
    return _enter(flow, option.next, carried)
