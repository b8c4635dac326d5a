"""Per-instruction work of a compiled XLA program, read from its optimized HLO text (`compiled.as_text()`).

The step account (experiments/step_account.py) needs, for every instruction the runtime executes as one unit (a
thunk on CPU), its matrix-product FLOPs, its transcendental count, the bytes it reads and writes and the step part
that its op_name names (lgmrec_jax/step_parts.py). XLA's own cost analysis gives these for the whole program only.

Which instructions: those of the ENTRY computation and of the bodies of its while loops (the train program is a
`lax.scan`, a while loop; its body is the step). Instructions of deeper computations (fusion bodies, the loops inside
a random-number call) are folded into the instruction that calls them, as their time is in the profile.

Counting rules:
  * dot: 2·M·N·K (K the contracted size), recorded with its (M, K, N) so that the matmul rate of that shape can be
    measured; a dot inside a fusion counts for the fusion.
  * a CSR product (jaxlib's `cpu_csr_sparse_dense_ffi` custom call): 2·nnz·(operand columns) FLOPs; these are
    memory-bound, so the account floors them by bytes, not by the matmul rate.
  * transcendentals: elements produced by exp, log, log1p, expm1, tanh, logistic, rsqrt, sqrt, power, also fused.
  * bytes: the instruction's operands plus its result, each counted once (what a thunk must at least read and
    write; a fusion's internal temporaries are not memory traffic).
"""

from __future__ import annotations

import dataclasses
import math
import re

from lgmrec_jax.step_parts import part_of

DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
               "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
TRANSCENDENTAL = {"exponential", "log", "log-plus-one", "exponential-minus-one", "tanh", "logistic", "rsqrt",
                  "sqrt", "power", "cbrt", "sine", "cosine"}
# Executed as library calls that the CPU runtime completes asynchronously: the profiler's event of such an
# instruction covers its launch only, so the step account times these on their own (experiments/step_account.py).
ASYNC = {"dot", "convolution", "custom-call"}
# Instructions that move no data and run no code of their own.
FREE = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast", "after-all", "partition-id", "replica-id"}
CSR_TARGET = "cpu_csr_sparse_dense_ffi"

_ARRAY = re.compile(r"\b(" + "|".join(DTYPE_BYTES) + r")\[([\d,]*)\]")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.+?)\s+([\w\-]+)\((.*)$")
_HEADER = re.compile(r"^(ENTRY\s+)?%([\w.\-]+)\s.*\{\s*$")


@dataclasses.dataclass
class Instruction:
    name: str
    opcode: str
    shape: str  # the result's shape text, e.g. "f32[2048,64]{1,0}" or a tuple
    operands: list[str]
    attrs: str  # everything after the operand list (calls=, metadata=, ...)

    def called(self, key: str) -> str | None:
        found = re.search(key + r"=%([\w.\-]+)", self.attrs)
        return found.group(1) if found else None

    @property
    def op_name(self) -> str:
        found = re.search(r'op_name="([^"]*)"', self.attrs)
        return found.group(1) if found else ""


@dataclasses.dataclass
class Cost:
    """One executed instruction's work."""

    name: str
    part: str  # a step_parts.PARTS name, or "other"
    backward: bool  # traced under transpose(...): the gradient pass
    asynchronous: bool  # a library call (Eigen dot, FFI custom call) whose thunk returns before the work is done
    # For an asynchronous instruction, what it computes, so that it can be timed on its own (step_account.py):
    # ("dot", lhs shape, rhs shape, lhs contracting, rhs contracting, lhs batch, rhs batch) or
    # ("csr", nnz, output rows, operand rows, operand columns).
    replay: tuple | None = None
    flops: float = 0.0  # dense matrix products
    sparse_flops: float = 0.0  # CSR products
    transcendentals: float = 0.0
    bytes: float = 0.0
    dots: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)  # (M, K, N) of each dense product


def shape_bytes(shape: str) -> int:
    return sum(DTYPE_BYTES[dt] * math.prod(int(d) for d in dims.split(",") if d) for dt, dims in _ARRAY.findall(shape))


def shape_elements(shape: str) -> int:
    return sum(math.prod(int(d) for d in dims.split(",") if d) for _, dims in _ARRAY.findall(shape))


def dims_of(shape: str) -> list[int]:
    found = _ARRAY.search(shape)
    return [int(d) for d in found.group(2).split(",") if d] if found else []


def _split_operands(rest: str) -> tuple[list[str], str]:
    """The operand names of `rest` (the text after the opcode's parenthesis) and the attributes after it."""
    depth, end = 1, len(rest)
    for i, ch in enumerate(rest):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            end = i
            break
    return re.findall(r"%([\w.\-]+)", rest[:end]), rest[end + 1:]


def parse(text: str) -> tuple[dict[str, list[Instruction]], str]:
    """Computations by name (instructions in order) and the ENTRY computation's name."""
    computations: dict[str, list[Instruction]] = {}
    current, entry = None, ""
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header and " = " not in line.split("{")[0]:
            current = header.group(2)
            computations[current] = []
            if header.group(1):
                entry = current
            continue
        if current is None:
            continue
        found = _INSTR.match(line)
        if found:
            name, shape, opcode, rest = found.groups()
            operands, attrs = _split_operands(rest)
            computations[current].append(Instruction(name, opcode, shape, operands, attrs))
    if not entry:
        raise ValueError("no ENTRY computation in the HLO text")
    return computations, entry


def _dot(instr: Instruction, shapes: dict[str, str]) -> tuple[int, int, int]:
    lhs = dims_of(shapes[instr.operands[0]])
    k_dims, b_dims = _dims_attr(instr, "lhs_contracting_dims"), _dims_attr(instr, "lhs_batch_dims")
    k = math.prod(lhs[d] for d in k_dims)
    out = math.prod(dims_of(instr.shape))
    m = math.prod(lhs[d] for d in range(len(lhs)) if d not in k_dims and d not in b_dims) * \
        math.prod(lhs[d] for d in b_dims)
    n = out // max(m, 1)
    return m, k, n


def _inner_work(comp: str, computations: dict, shapes: dict, cost: Cost, seen: set) -> None:
    """Adds the dots and transcendentals of a called computation (and of what it calls) to `cost`."""
    if comp in seen or comp not in computations:
        return
    seen.add(comp)
    for instr in computations[comp]:
        _own_work(instr, computations, shapes, cost, seen)


def _own_work(instr: Instruction, computations: dict, shapes: dict, cost: Cost, seen: set) -> None:
    if instr.opcode in ("dot", "convolution") and instr.operands:
        m, k, n = _dot(instr, shapes)
        cost.flops += 2.0 * m * k * n
        cost.dots.append((m, k, n))
    elif instr.opcode in TRANSCENDENTAL:
        cost.transcendentals += shape_elements(instr.shape)
    elif instr.opcode == "custom-call" and CSR_TARGET in instr.attrs:
        nnz = shape_elements(shapes[instr.operands[0]])
        columns = math.prod(dims_of(instr.shape)[1:]) or 1
        cost.sparse_flops += 2.0 * nnz * columns
    for key in ("calls", "to_apply", "body", "condition"):
        callee = instr.called(key)
        if callee:
            _inner_work(callee, computations, shapes, cost, seen)


def _dims_attr(instr: Instruction, key: str) -> tuple[int, ...]:
    found = re.search(key + r"=\{([\d,]*)\}", instr.attrs)
    return tuple(int(d) for d in found.group(1).split(",") if d) if found else ()


def _replay(instr: Instruction, shapes: dict[str, str]) -> tuple | None:
    if instr.opcode == "dot" and len(instr.operands) == 2:
        lhs, rhs = (tuple(dims_of(shapes[o])) for o in instr.operands)
        return ("dot", lhs, rhs, _dims_attr(instr, "lhs_contracting_dims"), _dims_attr(instr, "rhs_contracting_dims"),
                _dims_attr(instr, "lhs_batch_dims"), _dims_attr(instr, "rhs_batch_dims"))
    if instr.opcode == "custom-call" and CSR_TARGET in instr.attrs and len(instr.operands) == 4:
        nnz = shape_elements(shapes[instr.operands[0]])
        operand = dims_of(shapes[instr.operands[3]])
        return ("csr", nnz, dims_of(instr.shape)[0], operand[0], math.prod(operand[1:]) or 1)
    return None


def executed_instructions(text: str) -> list[Cost]:
    """The cost of every instruction executed as one unit: ENTRY's and its while bodies' (see module docstring)."""
    computations, entry = parse(text)
    shapes = {i.name: i.shape for comp in computations.values() for i in comp}
    scopes = [entry] + [i.called("body") for i in computations[entry] if i.opcode == "while"]
    costs = []
    for comp in scopes:
        for instr in computations.get(comp, []):
            if instr.opcode in FREE or instr.opcode == "while":
                continue
            op_name = instr.op_name
            cost = Cost(name=instr.name, part=part_of(op_name) or "other", backward="transpose(" in op_name,
                        asynchronous=instr.opcode in ASYNC, replay=_replay(instr, shapes))
            cost.bytes = shape_bytes(instr.shape) + sum(shape_bytes(shapes.get(o, "")) for o in instr.operands)
            _own_work(instr, computations, shapes, cost, set())
            costs.append(cost)
    return costs
