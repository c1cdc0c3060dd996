"""The decision-tree engine on the shipped operator flow, and flow-file validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.chat.flow_engine import load_flow, match_option, parse_flow, start, step

FLOW = load_flow()


def walk(*answers: str):
    turn = start(FLOW)
    events: list[str] = []
    for answer in answers:
        turn = step(FLOW, turn.state, answer)
        events += turn.events
    return turn, events


# Every path of the shipped flow, ending where the operator expects.
@pytest.mark.parametrize(
    ("answers", "node", "events"),
    [
        (["1", "1", "2"], "turbo_refused", ["offer_refused"]),
        (["1", "1", "1"], "turbo_accepted", ["offer_accepted"]),
        (["1", "2", "1", "1"], "anything_else", []),           # billing: second copy
        (["1", "2", "1", "2"], "anything_else", []),           # billing: due date
        (["1", "2", "1", "3"], "client_menu", []),             # billing: back
        (["1", "2", "2", "1", "1"], "resolved", []),           # no signal, solved
        (["1", "2", "2", "1", "2"], "handoff", ["handoff_requested"]),
        (["1", "2", "2", "2", "1"], "resolved", []),           # slow internet, solved
        (["1", "2", "2", "3"], "client_menu", []),             # support: back
        (["1", "2", "3"], "handoff", ["handoff_requested"]),
        (["1", "2", "4"], "upgrade", []),
        (["1", "2", "5"], "goodbye", []),
        (["1", "2", "1", "1", "1"], "client_menu", []),        # anything else: yes
        (["1", "2", "1", "1", "2"], "goodbye", []),            # anything else: no
        (["2", "1"], "sales_handoff", ["handoff_requested"]),  # new customer, consultant
        (["2", "2"], "goodbye", []),
    ],
)
def test_paths(answers: list[str], node: str, events: list[str]) -> None:
    turn, seen = walk(*answers)
    assert turn.state["node"] == node and seen == events


def test_every_node_is_visited_by_the_paths_above() -> None:
    visited = {"start", "counter_offer", "counter_accepted"}
    for answers in (["1", "1", "2"], ["1", "1", "1"], ["1", "2", "1", "1", "1"],
                    ["1", "2", "1", "2", "2"], ["1", "2", "2", "1", "1"],
                    ["1", "2", "2", "2", "2"], ["1", "2", "3"], ["1", "2", "5"],
                    ["2", "1"], ["2", "2"]):
        turn = start(FLOW)
        for answer in answers:
            turn = step(FLOW, turn.state, answer)
            visited |= {message.node for message in turn.messages}
    assert visited == {node.id for node in FLOW.nodes}


def test_refusal_ends_politely_with_no_options() -> None:
    turn, _ = walk("1", "1", "2")
    assert turn.state["ended"] is True
    assert turn.messages[-1].options == [] and "thank you" in turn.messages[-1].text.lower()


@pytest.mark.parametrize("said", ["1", "1.", " 1 ", "1)", "Yes", "YES", "sim", "Sim!", "s"])
def test_forgiving_yes(said: str) -> None:
    assert step(FLOW, start(FLOW).state, said).state["node"] == "upgrade"


@pytest.mark.parametrize("said", ["2", "No", "nao", "NÃO", "não."])
def test_forgiving_no(said: str) -> None:
    assert step(FLOW, start(FLOW).state, said).state["node"] == "new_customer"


def test_option_text_matches() -> None:
    turn, _ = walk("1", "2", "technical support")
    assert turn.state["node"] == "support"


@pytest.mark.parametrize("said", ["", "   ", "7", "0", "maybe", "1 2", "🙂", "x" * 3000])
def test_anything_else_reprompts_with_options(said: str) -> None:
    state = start(FLOW).state
    turn = step(FLOW, state, said)
    assert turn.state == state and turn.events == []
    assert "1. Yes" in turn.messages[0].text and turn.messages[0].options == ["Yes", "No"]


def test_input_after_the_end_starts_over() -> None:
    turn, _ = walk("1", "1", "2", "hello")
    assert turn.state["node"] == "start" and turn.state["ended"] is False


def test_auto_advancing_nodes_chain_messages() -> None:
    turn, _ = walk("1", "2", "1", "1")
    assert [m.node for m in turn.messages] == ["bill_copy", "anything_else"]


def test_match_ignores_out_of_range_numbers() -> None:
    assert match_option(FLOW.node("start"), "3") is None


VALID = """
start: a
nodes:
  - {id: a, prompt: "A?", options: [{label: "Go", next: b}]}
  - {id: b, prompt: "Bye", terminal: true}
"""


def test_a_minimal_flow_loads() -> None:
    assert parse_flow(VALID).node("b").terminal


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (VALID.replace("next: b", "next: nowhere"), "unknown node 'nowhere'"),
        (VALID + '  - {id: c, prompt: "Orphan", terminal: true}\n', "unreachable nodes: c"),
        (VALID + '  - {id: b, prompt: "Again", terminal: true}\n', "duplicate node ids: b"),
        (VALID.replace("start: a", "start: z"), "start node 'z' does not exist"),
        (VALID.replace(", terminal: true", ""), "needs exactly one of options, next, terminal"),
        (VALID.replace('label: "Go"', "label: yes"), "valid string"),
    ],
)
def test_invalid_flows_are_refused_at_load(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_flow(text)
