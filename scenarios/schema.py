"""The scenario schema: frozen pydantic models, one docstring per field with meaning and unit.

YAML becomes a ``Scenario`` once, at the boundary (``otmarl.scenarios.load``); nothing deeper reads
dicts. Every numeric field typed ``*Dist`` may be a distribution (see ``distributions.py``), drawn
from the run's seed: per node for node parameters, per link for link parameters, per task for task
parameters. The model base, located errors and did-you-mean come from ``fields``, which the sweep
schema shares.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .errors import UserError
from .distributions import Dist, FractionDist, NonNegDist, PositiveDist, dist
from .controllers import LOCAL, Controller  # noqa: F401  (part of the schema)
from .fields import Model, closest, located_error, split_path
from .graphfile import link_event_problem


# ------------------------------------------------------------------------ cross-field checks
# Pure functions shared by the model validators below (which protect Python-API users) and by
# the YAML loader (which runs them on the raw file, so that they are reported together with
# every other problem and at the exact key). Each returns None or a message.

def cross_field_error(field: str, message: str) -> PydanticCustomError:
    """The error a model validator raises for one problem: ``field`` is the dotted path of the
    offending key relative to the model ('' for the model itself); the loader points at it."""
    return located_error([(split_path(field) or (), message, "value")])


def soc_order_problem(min_soc: float, resume_soc: float, min_given: bool = True) -> tuple[str, str] | None:
    """(field, message) if the brownout level lies above the resume level."""
    if min_soc <= resume_soc:
        return None
    if min_given:
        return "min_soc", f"value {min_soc:g} must be <= resume_soc={resume_soc:g}"
    return "resume_soc", f"value {resume_soc:g} must be >= min_soc={min_soc:g} (the default)"


def epochs_problem(horizon_h: float, control_interval_s: float) -> str | None:
    """Message if the horizon is not a whole number of control epochs."""
    epochs = horizon_h * 3600.0 / control_interval_s
    if abs(epochs - round(epochs)) <= 1e-9 * max(1.0, epochs):
        return None
    return (f"value {horizon_h:g} h is not a whole number of control epochs of "
            f"control_interval_s={control_interval_s:g} s ({epochs:.6g} epochs)")


def grid_problem(rows: int, cols: int, n_nodes: int) -> str | None:
    if rows * cols == n_nodes:
        return None
    return f"rows x cols = {rows} x {cols} = {rows * cols}, but the node classes have {n_nodes} nodes"


def node_name_problem(name: str, counts: Mapping[str, int]) -> str | None:
    """Message if ``name`` is not '<class>_<i>' for an existing class and index."""
    cls, _, idx = str(name).rpartition("_")
    if cls in counts and idx.isdigit() and str(int(idx)) == idx and int(idx) < counts[cls]:
        return None
    if cls in counts:
        return f"unknown node '{name}': class '{cls}' has nodes {cls}_0 .. {cls}_{counts[cls] - 1}"
    close = closest(cls or str(name), list(counts))
    if close:
        i = int(idx) if idx.isdigit() and int(idx) < counts[close] else 0
        return f"unknown node '{name}'; did you mean '{close}_{i}'?"
    return f"unknown node '{name}' (nodes are named <class>_<index>, e.g. '{next(iter(counts))}_0')"


# ---------------------------------------------------------------------------------- location
class Location(Model):
    latitude_deg: float = Field(52.52, ge=-90, le=90)
    """Latitude in degrees north (used for the sun's position)."""
    longitude_deg: float = Field(13.40, ge=-180, le=180)
    """Longitude in degrees east."""
    altitude_m: float = Field(34.0, ge=-500, le=9000)
    """Altitude above sea level in metres."""
    timezone: str = "UTC"
    """IANA time zone of ``start`` (e.g. 'Europe/Berlin')."""


# ----------------------------------------------------------------------------------- network
class Link(Model):
    latency_s: NonNegDist = 0.005
    """One-way propagation and processing latency of one hop, seconds."""
    bandwidth_kbps: PositiveDist = 1000.0
    """Link throughput in kilobytes per second (a task of data_kb takes data_kb/bandwidth s)."""
    tx_energy_wh_per_kb: NonNegDist = 1e-6
    """Energy the sender spends to transmit one kB over this hop, Wh."""
    transfer_efficiency: dist(gt=0, le=1) = 0.95
    """Fraction of energy sent over this hop that arrives (power-line / converter efficiency)."""
    power_limit_w: PositiveDist = 1e9
    """Largest average power this hop can carry during a control epoch, W."""


class GridTopology(Model):
    kind: Literal["grid"]
    rows: int = Field(ge=1)
    """Rows of the 2-D grid; rows x cols must equal the number of nodes."""
    cols: int = Field(ge=1)
    """Columns of the 2-D grid."""


class RandomGeometricTopology(Model):
    kind: Literal["random_geometric"]
    radius: float = Field(gt=0, le=1.5)
    """Nodes placed uniformly in the unit square are linked when closer than this."""
    connect: bool = True
    """Link the components of the graph to each other by their closest pairs."""


class SmallWorldTopology(Model):
    kind: Literal["small_world"]
    k: int = Field(ge=2)
    """Each node is linked to its k nearest ring neighbours before rewiring."""
    p: float = Field(ge=0, le=1)
    """Probability of rewiring each edge."""


class ScaleFreeTopology(Model):
    kind: Literal["scale_free"]
    m: int = Field(ge=1)
    """Edges each new node attaches with (Barabasi-Albert)."""


class StarTopology(Model):
    kind: Literal["star"]
    """Node 0 (the first node of the first class) is the hub."""


class TreeTopology(Model):
    kind: Literal["tree"]
    branching: int = Field(2, ge=1)
    """Children per node of a balanced tree, filled breadth first; node 0 is the root."""


class CompleteTopology(Model):
    kind: Literal["complete"]


class FileTopology(Model):
    kind: Literal["edge_list", "graphml"]
    file: str
    """Path of the graph file, relative to the scenario file. Node count must match the classes.
    Edge attributes named like the fields of ``link`` override the defaults for that edge."""


Topology = Annotated[Union[GridTopology, RandomGeometricTopology, SmallWorldTopology,
                           ScaleFreeTopology, StarTopology, TreeTopology, CompleteTopology,
                           FileTopology], Field(discriminator="kind")]


class Network(Model):
    topology: Topology
    """How the graph is made: a generator or a file."""
    link: Link = Link()
    """Default link parameters (per-link draws when they are distributions)."""


# ----------------------------------------------------------------------------------- battery
class Battery(Model):
    capacity_wh: PositiveDist
    """Usable capacity, Wh."""
    initial_soc: FractionDist = 0.5
    """State of charge at the start, fraction of capacity."""
    min_soc: float = Field(0.05, ge=0, lt=1)
    """Brownout level: a node whose stored energy falls to this fraction stops serving."""
    resume_soc: float = Field(0.15, ge=0, le=1)
    """A browned-out node comes back once its state of charge reaches this fraction."""
    charge_efficiency: dist(gt=0, le=1) = 0.95
    """Fraction of energy put into the battery that is stored."""
    discharge_efficiency: dist(gt=0, le=1) = 0.95
    """Fraction of energy taken from storage that reaches the node's bus."""
    max_charge_w: PositiveDist = 1e9
    """Largest charging power at the battery terminals, W."""
    max_discharge_w: PositiveDist = 1e9
    """Largest discharging power at the bus, W."""
    self_discharge_per_day: dist(ge=0, lt=1) = 0.0
    """Fraction of stored energy lost per day when idle (geometric decay)."""

    @model_validator(mode="after")
    def _soc_order(self) -> "Battery":
        bad = soc_order_problem(self.min_soc, self.resume_soc, "min_soc" in self.model_fields_set)
        if bad:
            raise cross_field_error(*bad)
        return self


# ----------------------------------------------------------------------------------- harvest
class Cloud(Model):
    mean_clearness: float = Field(0.75, ge=0, le=1)
    """Long-run mean of the clear-sky index (1 = always clear sky)."""
    variability: float = Field(0.2, ge=0, le=1)
    """Standard deviation of the clear-sky index around its mean."""
    correlation_h: float = Field(3.0, gt=0)
    """Correlation time of the cloud process (AR(1) in the hour), hours."""
    shared: float = Field(0.8, ge=0, le=1)
    """Share of the cloud signal common to all nodes (weather is regional)."""


class SolarHarvest(Model):
    kind: Literal["solar"]
    panel_area_m2: PositiveDist
    """Panel area, m^2."""
    efficiency: dist(gt=0, le=1) = 0.2
    """Module and converter efficiency from plane-of-array irradiance to DC power."""
    tilt_deg: float = Field(30.0, ge=0, le=90)
    """Panel tilt from horizontal, degrees."""
    azimuth_deg: float = Field(180.0, ge=0, lt=360)
    """Panel azimuth, degrees clockwise from north (180 = facing south)."""
    irradiance: Literal["clearsky", "tmy"] = "clearsky"
    """'clearsky': pvlib's Ineichen clear sky times the cloud process; 'tmy': measured global
    horizontal irradiance from a TMY3 file (then the cloud process is not applied)."""
    tmy_file: str = "pvlib:723170TYA.CSV"
    """TMY3 file for irradiance='tmy': a path, or 'pvlib:NAME' for a file shipped with pvlib."""
    cloud: Cloud = Cloud()
    """The stochastic cloud process multiplying clear-sky irradiance."""


class WindHarvest(Model):
    kind: Literal["wind"]
    power_curve_speed_m_s: tuple[Annotated[float, Field(ge=0, le=200)], ...] = (0, 3, 6, 9, 12, 25, 25.01)
    """Wind speeds of the turbine's power curve, m/s, increasing."""
    power_curve_w: tuple[Annotated[float, Field(ge=0, le=1e9)], ...] = (0, 0, 150, 400, 500, 500, 0)
    """Electrical power at those speeds, W (linear interpolation; 0 outside)."""
    mean_speed_m_s: PositiveDist = 6.0
    """Mean wind speed at hub height, m/s (Weibull)."""
    weibull_k: float = Field(2.0, gt=0)
    """Weibull shape of the wind speed distribution."""
    correlation_h: float = Field(6.0, gt=0)
    """Correlation time of the wind speed process, hours."""

    @model_validator(mode="after")
    def _curve(self) -> "WindHarvest":
        s, p = self.power_curve_speed_m_s, self.power_curve_w
        if len(s) != len(p) or len(s) < 2:
            raise cross_field_error("power_curve_w", "the power curve needs as many powers as speeds "
                                    f"(at least 2), got {len(p)} powers and {len(s)} speeds")
        for i in range(1, len(s)):
            if s[i] <= s[i - 1]:
                raise cross_field_error(f"power_curve_speed_m_s.{i}", f"speeds must increase: "
                                        f"value {s[i]:g} follows {s[i - 1]:g}")
        for i, w in enumerate(p):
            if w < 0:
                raise cross_field_error(f"power_curve_w.{i}", f"value {w:g} must be >= 0")
        return self


class ConstantHarvest(Model):
    kind: Literal["constant"]
    power_w: NonNegDist
    """Constant harvested power, W."""


class TraceHarvest(Model):
    kind: Literal["trace"]
    file: str
    """CSV file relative to the scenario file, with a column of hours since start and a power column."""
    time_column: str = "hour"
    """Column with the time since the scenario start, hours: 0 in the first row, increasing from row
    to row (the trace repeats past its end)."""
    power_column: str = "power_w"
    """Column with harvested power, W (piecewise constant from each row until the next)."""
    scale: PositiveDist = 1.0
    """Factor applied per node to the trace."""


class NoHarvest(Model):
    kind: Literal["none"]


Harvest = Annotated[Union[SolarHarvest, WindHarvest, ConstantHarvest, TraceHarvest, NoHarvest],
                    Field(discriminator="kind")]


# ---------------------------------------------------------------------------------- workload
class PoissonArrivals(Model):
    kind: Literal["poisson"]
    rate_per_h: float = Field(ge=0)
    """Mean arrivals per hour at each node of the class."""


class BurstyArrivals(Model):
    kind: Literal["bursty"]
    on_rate_per_h: float = Field(ge=0)
    """Poisson rate while the source is on, per hour."""
    off_rate_per_h: float = Field(0.0, ge=0)
    """Poisson rate while the source is off, per hour."""
    mean_on_h: float = Field(gt=0)
    """Mean length of an on period (exponential), hours."""
    mean_off_h: float = Field(gt=0)
    """Mean length of an off period (exponential), hours."""


class TraceArrivals(Model):
    kind: Literal["trace"]
    file: str
    """CSV file relative to the scenario file with one row per task."""
    time_column: str = "hour"
    """Column with the arrival time since start, hours (rows at or past the horizon are ignored; at
    least one task must fall within the run)."""
    node_column: str = "node"
    """Column with the index of the node within the class (0-based); rows for other indices are ignored."""


Arrivals = Annotated[Union[PoissonArrivals, BurstyArrivals, TraceArrivals], Field(discriminator="kind")]


class Workload(Model):
    arrival: Arrivals
    """The arrival process at each node of the class."""
    work_s: PositiveDist = 1.0
    """Work per task, in seconds at speed 1."""
    data_kb: NonNegDist = 10.0
    """Input data to move when the task is offloaded, kB."""
    deadline_s: PositiveDist = 3600.0
    """Relative deadline from generation, s: a task finishing later is late; one still waiting
    then is dropped as expired."""
    priority: Dist = 0
    """Priority (larger is more urgent), reported and used by controllers."""


class Queue(Model):
    capacity: int = Field(100, ge=1)
    """Tasks that may wait (not counting those running); an arrival beyond it is dropped."""
    discipline: Literal["fifo", "edf"] = "fifo"
    """Service order: first in first out, or earliest deadline first."""


# -------------------------------------------------------------------------------- node class
class NodeClass(Model):
    count: int = Field(ge=1)
    """Number of nodes of this class; they are named '<class>_<i>'."""
    battery: Battery
    """The node's battery."""
    harvest: Harvest = NoHarvest(kind="none")
    """The node's energy source."""
    idle_power_w: NonNegDist = 0.0
    """Power drawn while up, whether serving or not, W."""
    active_power_w: NonNegDist = 0.0
    """Extra power drawn by each busy server, W."""
    speed: PositiveDist = 1.0
    """Work seconds served per wall second by one server."""
    servers: int = Field(1, ge=1)
    """Parallel task slots."""
    queue: Queue = Queue()
    """The task queue."""
    on_down: Literal["hold", "drop"] = "hold"
    """What a node that browns out or fails does with its waiting tasks (and with tasks that
    arrive while it is down): keep them, or drop them with reason 'node_down'."""
    workload: Workload | None = None
    """Tasks generated at this node; none if omitted."""


# ------------------------------------------------------------------------------------ faults
class FaultEvent(Model):
    at_h: float = Field(ge=0)
    """Time of the event since the start, hours (applied at the next control epoch boundary)."""
    action: Literal["down", "up"]
    """Fail or repair."""
    node: str | None = None
    """Node name ('<class>_<i>') for a node event."""
    link: tuple[str, str] | None = None
    """The two node names of a link, for a link event."""

    @model_validator(mode="after")
    def _target(self) -> "FaultEvent":
        if (self.node is None) == (self.link is None):
            raise cross_field_error("", "a fault event names exactly one of 'node' or 'link'")
        return self


class RandomFaults(Model):
    node_mtbf_h: float | None = Field(None, gt=0)
    """Mean time between failures of each node, hours (exponential); none if omitted."""
    node_mttr_h: float = Field(1.0, gt=0)
    """Mean time to repair a failed node, hours."""
    link_mtbf_h: float | None = Field(None, gt=0)
    """Mean time between failures of each link, hours."""
    link_mttr_h: float = Field(1.0, gt=0)
    """Mean time to repair a failed link, hours."""


class Faults(Model):
    events: tuple[FaultEvent, ...] = ()
    """Scheduled failures and repairs."""
    random: RandomFaults = RandomFaults()
    """Random failure and repair processes."""


# ---------------------------------------------------------------------------- controller etc.
class RewardWeights(Model):
    """Weights of the MARL env's team reward terms, per epoch (docs/marl.md)."""

    on_time: float = Field(1.0, ge=0)
    """Tasks completed on time this epoch, per task expected per epoch (scenario mean)."""
    dropped: float = Field(0.5, ge=0)
    """Tasks dropped this epoch (any reason), per task expected per epoch (a penalty)."""
    unserved: float = Field(1.0, ge=0)
    """Share of the nodes' idle load not served this epoch (brownout; failed nodes excluded)."""
    loss: float = Field(0.5, ge=0)
    """Energy spent moving things (transport loss + transmit energy) / total idle load per epoch."""
    fairness: float = Field(1.0, ge=0)
    """Change of Jain's index of the per-node on-time ratio (by origin, cumulative): the
    episode's sum of this term is the final index minus the first."""
    local: float = Field(0.0, ge=0, le=1)
    """Mix of local shaping: agent i gets (1 - local) * team + local * (its own on-time
    completions and unserved load, same scales); 0 = pure team reward."""
    credit: float = Field(0.0, ge=0, le=1)
    """Mix of transport credit: agent i gets (1 - credit) * team + credit * n * share_i * team,
    share_i being its part of this epoch's transport plan (its marginals: Wh sent and received,
    tasks routed out and taken in; equal shares when nothing moved). Rewards still average to
    the team reward; 0 = off."""


class Marl(Model):
    reward: RewardWeights = RewardWeights()
    """Team reward weights of the MARL env (``otmarl train`` and ``parallel_env``)."""


#: Every table of a run folder (``<name>.parquet``), in the order they are written.
RUN_TABLES = ("timeseries", "tasks", "flows", "nodes", "links", "epochs", "link_events")
#: ``--tables`` of run, compare and sweep: which tables a run folder holds besides summary.json
#: and metadata.json. ``no-tasks`` leaves out the one table with a row per task (the largest by
#: far); the per-node and per-epoch task counts the reports need stay in nodes and epochs.
TABLE_CHOICES: dict[str, tuple[str, ...]] = {
    "all": RUN_TABLES,
    "no-tasks": tuple(t for t in RUN_TABLES if t != "tasks"),
    "summary": (),
}
#: ``--tables`` of ``otmarl run`` (every table) and of compare and sweep (no per-task rows).
RUN_DEFAULT_TABLES = "all"
MANY_RUNS_DEFAULT_TABLES = "no-tasks"


def check_tables(tables: str) -> str:
    """``tables`` if it is a ``--tables`` choice, else a UserError listing the choices."""
    if tables not in TABLE_CHOICES:
        raise UserError(f"--tables: unknown choice '{tables}' (choose from "
                        f"{', '.join(TABLE_CHOICES)})")
    return tables


class Scenario(Model):
    name: str = "scenario"
    """Short name, used in run folders and reports."""
    description: str = ""
    """What the scenario models."""
    start: datetime = datetime(2024, 6, 21)
    """Start date and time, local time at ``location.timezone``."""
    horizon_h: float = Field(gt=0, le=24 * 366)
    """Simulated time, hours."""
    control_interval_s: float = Field(900.0, ge=1)
    """Length of a control epoch, s: controllers act once per epoch; harvest is averaged over it."""
    location: Location = Location()
    """Where the scenario is (for the sun)."""
    network: Network
    """The communication and energy-sharing graph."""
    nodes: dict[str, NodeClass] = Field(min_length=1)
    """Node classes by name, in order; nodes are numbered class by class."""
    faults: Faults = Faults()
    """Node and link failures."""
    controller: Controller = LOCAL
    """Who decides energy transfers and task routes."""
    marl: Marl = Marl()
    """Settings of the MARL env built on this scenario."""

    @property
    def n_nodes(self) -> int:
        return sum(c.count for c in self.nodes.values())

    @property
    def n_epochs(self) -> int:
        return int(round(self.horizon_h * 3600.0 / self.control_interval_s))

    def node_names(self) -> list[str]:
        return [f"{cls}_{i}" for cls, c in self.nodes.items() for i in range(c.count)]

    @model_validator(mode="after")
    def _cross(self) -> "Scenario":
        bad = epochs_problem(self.horizon_h, self.control_interval_s)
        if bad:
            raise cross_field_error("horizon_h", bad)
        topo = self.network.topology
        if isinstance(topo, GridTopology):
            bad = grid_problem(topo.rows, topo.cols, self.n_nodes)
            if bad:
                raise cross_field_error("network.topology.rows", bad)
        problems = self._fault_event_problems()
        if problems:
            raise located_error([(split_path(f), m, "value") for f, m in problems])
        return self

    def _fault_event_problems(self) -> list[tuple[str, str]]:
        """(field, message) of every fault event naming an unknown node or a pair that is not a
        link (graph files: the loader checks the pair against the file)."""
        counts = {cls: c.count for cls, c in self.nodes.items()}
        topo, out = self.network.topology, []
        for i, ev in enumerate(self.faults.events):
            named = [("node", ev.node)] if ev.node is not None else [
                (f"link.{j}", nm) for j, nm in enumerate(ev.link or ())]
            bad = [(f"faults.events.{i}.{where}", node_name_problem(nm, counts)) for where, nm in named]
            out += [(f, m) for f, m in bad if m]
            if ev.link is not None and not any(m for _, m in bad) and not isinstance(topo, FileTopology):
                m = link_event_problem(topo.model_dump(), self.node_names(), ev.link)
                out += [(f"faults.events.{i}.link", m)] if m else []
        return out
