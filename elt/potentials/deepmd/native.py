"""Native (C) kernels of the compressed se_e2_a model on the CPU: the descriptor's environment
matrix and the forces, each in one pass over the neighbour slots.

With the embedding tabulated (:mod:`elt.potentials.deepmd.compress`), the expensive part of a step is
``gr_i = sum_j R~_ij^T G(s_ij)`` (4 x M1 per atom and member) and its gradient. The torch path
materialises G (k, N, S, M1), runs a batched matmul and lets autograd go back through both; these
kernels walk the slots once instead, skip the slots at or beyond rcut (so a Verlet list with a skin
needs no compaction), form the symmetric descriptor, and from its gradient give the forces and
virials directly (autograd runs only through the fitting networks):

    forward(d (N, S, 3), ...)                  -> gr (k, N, 4, M1), descriptor (k, N, M1*M2)
    backward(dE/ddescriptor (k, N, M1*M2), gr, d, nbr, ...)
                                               -> forces (k or 1, N, 3) eV/Å, virials (k or 1, F, 3, 3) eV

``d`` holds r_j - r_i per slot (Å, the model's dtype, float32 or float64); ``mean`` sums the
members' slot gradients into one (the forces of the members' mean energy, when the descriptor
gradient is that of the mean). Forces and virials are accumulated in float64.

The C source below is compiled on first use (under a second) with the system compiler (``$CC``,
default ``cc``; ``-O3 -march=native``, the model's M1 and M2 as constants) into a cache folder
(``$ELT_CACHE_DIR`` or ``~/.cache/elt``), keyed by the source, the flags and this CPU, so a later
process loads it in milliseconds and a node of another CPU type builds its own. Without a compiler
:func:`load` returns None and the torch path stays.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
import weakref
from pathlib import Path
from typing import Optional

import torch

log = logging.getLogger(__name__)

SOURCE = r"""#include <math.h>
#include <stdint.h>
#include <stdlib.h>

typedef REAL real;  /* REAL, M1 (embedding width) and M2 (axis neurons) come from -D flags */

/* One slot's geometry: 1/r, the environment row e = (s, s x/r, s y/r, s z/r) with s(r) = sw(r)/r,
   ds/dr, and the table bin of s with the position t inside it (the last bin continues linearly). */
typedef struct { real inv_r, e[4], dsdr, t; int64_t bin; } slot_t;

static inline int slot_geometry(const real* v, real rc, real rs, real h, int64_t nb1, slot_t* g) {
    real r2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
    if (r2 >= rc * rc) return 0;  /* s(r) = 0 there; NaN goes on and stays NaN */
    real r = sqrt(r2), inv_r = 1 / r;
    real u = (r - rs) / (rc - rs);
    u = u < 0 ? 0 : (u > 1 ? 1 : u);
    real sw = u * u * u * (-6 * u * u + 15 * u - 10) + 1;
    real dsw = -30 / (rc - rs) * u * u * (u - 1) * (u - 1);
    real s = sw * inv_r, sr = s * inv_r;
    g->inv_r = inv_r;
    g->e[0] = s; g->e[1] = sr * v[0]; g->e[2] = sr * v[1]; g->e[3] = sr * v[2];
    g->dsdr = (dsw - s) * inv_r;
    real x = s / h, b = floor(x);
    if (!(b >= 0)) b = 0;  /* also NaN: t stays NaN */
    if (b > (real)(nb1 - 1)) b = (real)(nb1 - 1);
    g->t = x - b;
    g->bin = (int64_t)b;
    return 1;
}

/* gr (K, N, 4, M1) = sum over atom n's slots within rc of e^T G(s) (table (T, K, NB1, 4, M1));
   desc (K, N, M1, M2) = (gr * scale)^T (gr * scale)[:, :M2] with scale (K, 4) */
void se_a_forward(int64_t K, int64_t N, int64_t S, int64_t m1, int64_t m2, int64_t NB1,
                  const real* restrict d, const int64_t* restrict slot_type, const real* restrict table,
                  const real* restrict scale, real h, real rc, real rs, real* restrict gr, real* restrict desc)
{
    if (m1 != M1 || m2 != M2) return;  /* built for another model shape: the caller checks */
    for (int64_t i = 0; i < K * N * 4 * M1; ++i) gr[i] = 0;
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t s = 0; s < S; ++s) {
            slot_t g;
            if (!slot_geometry(d + (n * S + s) * 3, rc, rs, h, NB1, &g)) continue;
            for (int64_t k = 0; k < K; ++k) {
                const real* restrict c = table + ((slot_type[s] * K + k) * NB1 + g.bin) * 4 * M1;
                real* restrict acc = gr + (k * N + n) * 4 * M1;
                real t = g.t;
                for (int m = 0; m < M1; ++m) {
                    real y = c[m] + t * (c[M1 + m] + t * (c[2 * M1 + m] + t * c[3 * M1 + m]));
                    acc[m] += g.e[0] * y; acc[M1 + m] += g.e[1] * y; acc[2 * M1 + m] += g.e[2] * y; acc[3 * M1 + m] += g.e[3] * y;
                }
            }
        }
        for (int64_t k = 0; k < K; ++k) {
            const real* a = gr + (k * N + n) * 4 * M1;
            const real* sc = scale + k * 4;
            real* out = desc + (k * N + n) * M1 * M2;
            for (int m1 = 0; m1 < M1; ++m1)
                for (int m2 = 0; m2 < M2; ++m2) {
                    real x = 0;
                    for (int q = 0; q < 4; ++q) x += sc[q] * sc[q] * a[q * M1 + m1] * a[q * M1 + m2];
                    out[m1 * M2 + m2] = x;
                }
        }
    }
}

/* dE/dgr (4, M1) of one atom and member from dE/ddesc gd (M1, M2) */
static void gr_grad(const real* restrict a, const real* restrict sc, const real* restrict gd, real* restrict out) {
    for (int q = 0; q < 4; ++q) {
        real s2 = sc[q] * sc[q];
        const real* aq = a + q * M1;
        real x[M1];
        for (int m = 0; m < M1; ++m) x[m] = 0;
        for (int m2 = 0; m2 < M2; ++m2)
            for (int m = 0; m < M1; ++m) x[m] += gd[m * M2 + m2] * aq[m2];
        for (int m1 = 0; m1 < M1; ++m1)
            for (int m = 0; m < M2; ++m) x[m] += gd[m1 * M2 + m] * aq[m1];
        for (int m = 0; m < M1; ++m) out[q * M1 + m] = s2 * x[m];
    }
}

/* lanes of one member's table row c and its atom's dE/dgr gm: y[q][m] += gm[q][m] G[m],
   y[4][m] += (sum_q gm[q][m] e[q]) dG[m] */
static inline void slot_lanes(const real* restrict c, const real* restrict gm, const slot_t* g, real* restrict y) {
    real t = g->t;
    for (int m = 0; m < M1; ++m) {
        real c1 = c[M1 + m], c2 = c[2 * M1 + m], c3 = c[3 * M1 + m];
        real val = c[m] + t * (c1 + t * (c2 + t * c3));
        real dval = c1 + t * (2 * c2 + 3 * t * c3);
        real a0 = gm[m], a1 = gm[M1 + m], a2 = gm[2 * M1 + m], a3 = gm[3 * M1 + m];
        y[m] += a0 * val; y[M1 + m] += a1 * val; y[2 * M1 + m] += a2 * val; y[3 * M1 + m] += a3 * val;
        y[4 * M1 + m] += (a0 * g->e[0] + a1 * g->e[1] + a2 * g->e[2] + a3 * g->e[3]) * dval;
    }
}

/* the five lane rows summed (a halving tree), then dE/dd of the slot */
static inline void slot_force(real* restrict y, const real* v, const slot_t* g, real inv_h, double* out) {
    /* fold onto the largest power of two P <= M1, then halve: constant bounds, unrolled */
    enum { P = M1 >= 256 ? 256 : M1 >= 128 ? 128 : M1 >= 64 ? 64 : M1 >= 32 ? 32 : M1 >= 16 ? 16 : M1 >= 8 ? 8 : M1 >= 4 ? 4 : M1 >= 2 ? 2 : 1 };
    for (int r = 0; r < 5; ++r)
        for (int m = 0; m < M1 - P; ++m) y[r * M1 + m] += y[r * M1 + P + m];
    #pragma GCC unroll 16
    for (int w = P / 2; w >= 1; w /= 2)
        for (int r = 0; r < 5; ++r)
            for (int m = 0; m < w; ++m) y[r * M1 + m] += y[r * M1 + w + m];
    real g0 = y[0], g1 = y[M1], g2 = y[2 * M1], g3 = y[3 * M1], gt = y[4 * M1];
    real sr = g->e[0] * g->inv_r;
    real gdot = g1 * v[0] + g2 * v[1] + g3 * v[2];
    real ds = gt * inv_h + g0 + gdot * g->inv_r;
    real coef = (ds * g->dsdr - gdot * sr * g->inv_r) * g->inv_r;
    out[0] = coef * v[0] + g1 * sr; out[1] = coef * v[1] + g2 * sr; out[2] = coef * v[2] + g3 * sr;
}

static inline void add_pair(double* f, double* w, int64_t n, int64_t j, const real* v, const double* g) {
    for (int a = 0; a < 3; ++a) { f[n * 3 + a] += g[a]; f[j * 3 + a] -= g[a]; }
    if (w)
        for (int a = 0; a < 3; ++a)
            for (int c = 0; c < 3; ++c) w[a * 3 + c] -= v[a] * g[c];
}

/* forces (KO, N, 3) and virial (KO, F, 3, 3) or NULL, float64, zeroed by the caller, from dE/ddesc
   gdesc (K, N, M1, M2); KO = 1 when mean: the members' lanes are summed before one reduction per slot
   (the forces of the members' summed energies, i.e. of their mean when gdesc is the mean's) */
int se_a_backward(int64_t K, int64_t N, int64_t S, int64_t m1, int64_t m2, int64_t NB1,
                  const real* restrict d, const int64_t* restrict nbr, const int64_t* restrict slot_type,
                  const int64_t* restrict frame, const real* restrict table, const real* restrict scale,
                  real h, real rc, real rs, const real* restrict gr, const real* restrict gdesc,
                  int64_t mean, int64_t F, double* restrict forces, double* restrict virial)
{
    if (m1 != M1 || m2 != M2) return 2;
    real* gam = malloc(sizeof(real) * K * 4 * M1);
    if (!gam) return 1;
    const real inv_h = 1 / h;
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t k = 0; k < K; ++k)
            gr_grad(gr + (k * N + n) * 4 * M1, scale + k * 4, gdesc + (k * N + n) * M1 * M2, gam + k * 4 * M1);
        for (int64_t s = 0; s < S; ++s) {
            const real* v = d + (n * S + s) * 3;
            slot_t g;
            if (!slot_geometry(v, rc, rs, h, NB1, &g)) continue;
            int64_t j = nbr[n * S + s];
            double w3[3];
            real y[5 * M1];
            if (mean) {
                for (int m = 0; m < 5 * M1; ++m) y[m] = 0;
                for (int64_t k = 0; k < K; ++k)
                    slot_lanes(table + ((slot_type[s] * K + k) * NB1 + g.bin) * 4 * M1, gam + k * 4 * M1, &g, y);
                slot_force(y, v, &g, inv_h, w3);
                add_pair(forces, virial ? virial + frame[n] * 9 : 0, n, j, v, w3);
                continue;
            }
            for (int64_t k = 0; k < K; ++k) {
                for (int m = 0; m < 5 * M1; ++m) y[m] = 0;
                slot_lanes(table + ((slot_type[s] * K + k) * NB1 + g.bin) * 4 * M1, gam + k * 4 * M1, &g, y);
                slot_force(y, v, &g, inv_h, w3);
                add_pair(forces + k * N * 3, virial ? virial + (k * F + frame[n]) * 9 : 0, n, j, v, w3);
            }
        }
    }
    free(gam);
    return 0;
}
"""

FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-shared", "-fPIC"]
_TYPES = {torch.float32: "float", torch.float64: "double"}
_LIBS: dict = {}


def _cpu_id() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def cache_dir() -> Path:
    root = os.environ.get("ELT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "elt")
    return Path(root) / "kernels"


def _build(real: str, m1: int, m2: int) -> Path:
    cc = os.environ.get("CC", "cc")
    flags = FLAGS + [f"-DREAL={real}", f"-DM1={m1}", f"-DM2={m2}"]
    key = hashlib.sha256("\0".join([SOURCE, cc, *flags, platform.machine(), _cpu_id()]).encode()).hexdigest()[:20]
    out = cache_dir() / f"se_a_{real}_{m1}x{m2}_{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src = Path(tmp) / "se_a.c"
        src.write_text(SOURCE)
        so = Path(tmp) / out.name
        subprocess.run([cc, *flags, "-o", str(so), str(src), "-lm"], check=True, capture_output=True, text=True)
        os.replace(so, out)  # atomic: processes building at once each write a whole file
    return out


def load(dtype: torch.dtype, m1: int = 16, m2: int = 4) -> Optional[ctypes.CDLL]:
    """The kernels for ``dtype`` (float32 or float64) and a model of embedding width ``m1`` and
    ``m2`` axis neurons (compile-time constants: the inner loops unroll), built on first use; None
    when no C compiler could build them (logged once)."""
    if dtype not in _TYPES:
        return None
    key = (dtype, int(m1), int(m2))
    if key not in _LIBS:
        try:
            _LIBS[key] = ctypes.CDLL(str(_build(_TYPES[dtype], int(m1), int(m2))))
        except (OSError, subprocess.CalledProcessError) as exc:
            why = getattr(exc, "stderr", None) or exc
            log.warning("native model kernels unavailable (%s); the torch kernels stay", str(why).strip()[:300])
            _LIBS[key] = None
    return _LIBS[key]


def available(dtype: torch.dtype = torch.float32, m1: int = 16, m2: int = 4) -> bool:
    return load(dtype, m1, m2) is not None


def _ptr(t: Optional[torch.Tensor]):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


class SeA:
    """The kernels bound to one model: ``table`` (T, k, NB1, 4, M1) contiguous, bin width ``h``,
    the R~ column scales ``scale`` (k, 4), ``m2`` axis neurons."""

    def __init__(self, table: torch.Tensor, h: float, scale: torch.Tensor, m2: int, rcut: float, rcut_smth: float):
        self.k, self.nb1, self.m1, self.m2 = table.shape[1], table.shape[2], table.shape[4], int(m2)
        self.lib = load(table.dtype, self.m1, self.m2)
        if self.lib is None:
            raise RuntimeError("native kernels are not available")
        self.table = table.contiguous()
        self.scale = scale.reshape(-1, 4).to(table.dtype).contiguous()
        real = ctypes.c_float if table.dtype == torch.float32 else ctypes.c_double
        self._consts = (real(h), real(rcut), real(rcut_smth))
        self._slot_types: dict = {}
        i64 = ctypes.c_int64
        self._dims = lambda n, s: (i64(self.k), i64(n), i64(s), i64(self.m1), i64(self.m2), i64(self.nb1))  # noqa: E731

    def slot_types(self, blocks) -> torch.Tensor:
        """The neighbour type of each slot column (S,), from the graph's type blocks."""
        key = tuple(int(b) for b in blocks)
        if key not in self._slot_types:
            widths = torch.as_tensor([b - a for a, b in zip(key[:-1], key[1:])], dtype=torch.long)
            self._slot_types[key] = torch.repeat_interleave(torch.arange(len(widths)), widths).contiguous()
        return self._slot_types[key]

    def forward(self, d: torch.Tensor, slot_type: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gr (k, N, 4, M1), descriptor (k, N, M1*M2)) from slot displacements ``d`` (N, S, 3) and
        each slot column's neighbour type (S,)."""
        n, s = d.shape[0], d.shape[1]
        gr = torch.empty(self.k, n, 4, self.m1, dtype=self.table.dtype)
        desc = torch.empty(self.k, n, self.m1 * self.m2, dtype=self.table.dtype)
        self.lib.se_a_forward(*self._dims(n, s), _ptr(d), _ptr(slot_type), _ptr(self.table), _ptr(self.scale),
                              *self._consts, _ptr(gr), _ptr(desc))
        return gr, desc

    def backward(self, gdesc: torch.Tensor, gr: torch.Tensor, d: torch.Tensor, nbr: torch.Tensor,
                 slot_type: torch.Tensor, frame: torch.Tensor, n_frames: int, *, mean: bool, virial: bool):
        """(forces (k or 1, N, 3), virials (k or 1, F, 3, 3) or None), float64, from dE/ddescriptor
        ``gdesc`` (k, N, M1*M2) and the forward's ``gr``."""
        n, s = d.shape[0], d.shape[1]
        ko = 1 if mean else self.k
        forces = torch.zeros(ko, n, 3, dtype=torch.float64)
        vir = torch.zeros(ko, n_frames, 3, 3, dtype=torch.float64) if virial else None
        err = self.lib.se_a_backward(*self._dims(n, s), _ptr(d), _ptr(nbr), _ptr(slot_type), _ptr(frame),
                                     _ptr(self.table), _ptr(self.scale), *self._consts, _ptr(gr),
                                     _ptr(gdesc.contiguous()), ctypes.c_int64(int(mean)), ctypes.c_int64(n_frames),
                                     _ptr(forces), _ptr(vir))
        if err:
            raise MemoryError("native kernel: out of memory") if err == 1 else RuntimeError("native kernel: wrong model shape")
        return forces, vir


_ENABLED = [False]
_BOUND: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def compile_kernels(enable: bool = True) -> bool:
    """Use the native kernels from now on in this process wherever a compressed model runs on the CPU
    and the caller does not choose (``DeepPot.forward(native=None)``: the ASE calculator, predictions);
    builds them if needed (about a second, once per machine). False when they cannot be built (no C
    compiler ...): the torch kernels stay. ``enable=False`` goes back to the torch kernels."""
    _ENABLED[0] = bool(enable) and available(torch.float32)  # a compiler at hand (the default shape)
    return _ENABLED[0]


def bound(model, vec: torch.Tensor, native: Optional[bool]) -> Optional[SeA]:
    """The kernels bound to ``model``'s tables for inputs like ``vec``, or None where the torch path
    runs: ``native`` False (or None while not enabled for the process), an uncompressed model, a
    device other than the CPU, a dtype other than the model's, or no compiler."""
    tables = getattr(model, "tables", None)
    if native is False or tables is None or vec.device.type != "cpu" or (native is None and not _ENABLED[0]):
        return None
    srcs = [t.c0 for t in tables] + [model.env_scale]
    hit = _BOUND.get(model)
    if hit is not None and len(hit[0]) == len(srcs) and all(a is b for a, b in zip(hit[0], srcs)):
        return hit[1]
    if srcs[0].dtype != vec.dtype or load(vec.dtype, model.m1, model.m2) is None:
        return None
    kernels = SeA(torch.stack([t.packed() for t in tables]), tables[0].h, model.env_scale, model.m2,
                  model.rcut, model.rcut_smth)
    _BOUND[model] = (srcs, kernels)  # holding the tensors: a new table never reuses their identity
    return kernels
