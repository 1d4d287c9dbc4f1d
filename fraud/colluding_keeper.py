"""colluding-keeper: the warehouse keeper (仓管员), bribed, lets pledged goods out unreleased.

A Mesa agent whose behaviour is the fraud. At `at` the keeper:
- covers the gate camera's lens, so the passage leaves no pictures (an act in the world);
- marks the lots as released in the edge box's local copy of the book, through the console he
  has as the site's operator (an edit of data at rest on the edge, not of any device message),
  so the edge's own outbound rule stays silent;
- calls a truck, loads the lots and waves it through the gate like any collection.
The RFID portal and the weighbridge still report honestly; the edge fuses the passage and sends
it up. Only a rule that checks the passage against the bank's own book at the cloud
(outbound-unauthorized with `where: cloud`) can catch it; camera-tamper sees the lens covered.
Minimum magnitude: one lot. Onset: the truck clears the gate. Covering the lens is its own act,
with its own label (`<id>-lens`, onset when the lens is covered, caught by camera-tamper).
"""

from __future__ import annotations

from typing import Callable, Iterator

import mesa
import simpy

from cangtwin.fraud.label import Label
from cangtwin.twin.warehouse import Warehouse

MINIMUM_LOTS = 1


class ColludingKeeper(mesa.Agent):
    """The keeper's behaviour, run as a SimPy process once bribed."""

    def __init__(self, warehouse: Warehouse, name: str) -> None:
        super().__init__(warehouse.model)
        self.name = name
        self.warehouse = warehouse
        self.acts: list[tuple[float, str]] = []

    def let_out(self, lots: list[str], cover: Callable[[], None] | None, on_cover: Callable[[], None],
                mark_released: Callable[[list[str]], None] | None,
                on_left: Callable[[list[str], float], None], pause_s: float) -> Iterator[simpy.Event]:
        env = self.warehouse.env
        if cover is not None:
            cover()
            on_cover()
            self.acts.append((env.now, "covered the gate camera"))
            yield env.timeout(pause_s)
        if mark_released is not None:
            mark_released(list(lots))
            self.acts.append((env.now, "marked the lots released at the edge"))
        self.warehouse.outbound(list(lots), on_left=on_left)
        self.acts.append((env.now, "called the truck"))


def inject_colluding_keeper(
    env: simpy.Environment, warehouse: Warehouse, label_id: str, at: float, lots: list[str],
    camera: str | None, cover: Callable[[], None] | None, mark_released: Callable[[list[str]], None] | None,
    record: Callable[[Label], None], pause_s: float = 30.0,
) -> Label:
    """`cover` covers the gate camera (None: left alone); `mark_released` edits the edge's local
    book (None: the keeper leaves the edge alone, and the edge's own rule catches the outbound)."""
    keeper = ColludingKeeper(warehouse, f"keeper-{label_id}")
    label = Label(
        id=label_id, kind="colluding-keeper", fault=False, targets=[f"lot:{lot}" for lot in lots],
        injected_at=at, magnitude=len(lots), magnitude_unit="lots",
        primary_rules=["outbound-unauthorized-cloud", "outbound-unauthorized"],
        secondary_rules=["inventory-mismatch", "ltv-band", "ltv-disposal"],
        detail={"covers_camera": cover is not None, "edits_edge_book": mark_released is not None,
                "minimum_magnitude": MINIMUM_LOTS},
    )

    def on_cover() -> None:
        record(Label(
            id=f"{label_id}-lens", kind="camera-cover", fault=False, targets=[f"device:{camera}"],
            injected_at=at, onset=env.now, magnitude=1, magnitude_unit="camera", primary_rules=["camera-tamper"],
            window_s=600.0, detail={"by": keeper.name},
        ))

    def on_left(left: list[str], t: float) -> None:
        label.onset = t
        label.detail["acts"] = [f"{when:.1f}: {what}" for when, what in keeper.acts]
        record(label)

    def start(_e: simpy.Event) -> None:
        env.process(keeper.let_out(lots, cover, on_cover, mark_released, on_left, pause_s))

    env.timeout(at - env.now).callbacks.append(start)
    return label
