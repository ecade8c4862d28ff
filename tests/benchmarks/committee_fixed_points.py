"""Issue 20, why the N-law's slope missed: the online ODE (K = M = 2, erf, T = I, a = v = 1) has
TWO symmetric fixed points near the plateau at η > 0, and Newton from the slowest point of a
trajectory lands on the wrong one.

* D: the two students coincide (Q11 = Q12 = Q22). The trajectory from a small random start
  passes near it first. At η > 0 it has a second unstable direction *inside* the symmetric
  subspace (Q12 falls below Q11), rate 0.024 at η = 1.
* P: the symmetric plateau proper (Q12 < Q11, all R equal); stable inside the symmetric
  subspace, one unstable direction (specialisation, R11 − R12 − R21 + R22). Its λ is the one
  the trajectory's asymmetry grows with during the long part of the plateau.

At η = 0 (flow) they coincide. Prints, for each η: the level, state and spectrum of each point
(D from Newton on the ODE's own trajectory, P from Newton at the end of an exactly symmetric
path). Run: ``PYTHONPATH=. OMP_NUM_THREADS=1 python tests/benchmarks/committee_fixed_points.py``.
Measured 2026-12-05 (η = 1): D level 0.021156, λ_D = 0.07481 (1/(2λ) = 6.68), second
eigenvalue +0.02428; P level 0.020657, λ_P = 0.05914 (1/(2λ) = 8.45), others all < 0."""

import numpy as np

from dynamics.models import committee as cm


def main() -> None:
    spec = cm.sample(2, 2, 500, "erf", init=0.1, seed=0)
    model = spec.model
    sym0 = np.array([0.01, 0.0, 0.01, 0.0, 0.0, 0.0, 0.0])  # Q = σ²I, R = 0: symmetric
    for lr in (0.0, 0.5, 1.0, 1.5):
        method = "online" if lr else "flow"

        def f(y, lr=lr):
            return model.flow(y, spec.T, spec.a, spec.v0) + lr * model.online_term(
                y, spec.T, spec.a, spec.v0)

        d = cm.plateau(spec, cm.integrate(spec, 800, method, lr=lr, points=2000), lr=lr)
        p = cm.plateau(spec, cm.integrate(spec, 400, method, lr=lr, y0=sym0, points=5).y[-1],
                       lr=lr)
        for name, pt in (("D", d), ("P", p)):
            vals = np.sort(np.linalg.eigvals(cm._jacobian(f, pt.y)).real)[::-1]
            print(f"η={lr:g} {name}: level {pt.level:.6f} y {np.round(pt.y, 4)} "
                  f"1/(2λ) {1 / (2 * pt.rate):.3f} eig {np.round(vals, 5)}", flush=True)


if __name__ == "__main__":
    main()
