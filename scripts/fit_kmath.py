#!/usr/bin/env python3
"""fit_kmath.py -- derives the polynomial coefficients of compiler/ops/kmath.c.

Each polynomial is a Chebyshev approximation (mpmath.chebyfit: interpolation
at Chebyshev nodes, within a small factor of the minimax error) of the part
of the function left after its leading terms are taken out exactly, so the
rounding of the leading terms dominates the error. Coefficients are then
rounded to float32 and the error of the rounded polynomial is measured on a
dense grid in 60-digit arithmetic. Run: python3 scripts/fit_kmath.py
"""
import struct
import mpmath as mp

mp.mp.dps = 60


def f32(v):
    return struct.unpack("<f", struct.pack("<f", float(v)))[0]


def hexf(v):
    return float(v).hex()


def horner(cs, x):
    p = mp.mpf(0)
    for c in reversed(cs):
        p = p * x + c
    return p


def fit(name, g, lo, hi, deg, exact):
    """g: the function to fit on [lo, hi]; exact(t, p): the whole function
    value from t and the polynomial value p, against which the relative
    error of the rounded coefficients is measured."""
    # Chebyshev nodes may include 0, where g is a limit: take it one
    # 10^-15 away (the fit is smooth there; nearer, the cancellation in g
    # would eat the 60 digits).
    safe = lambda t: g(t if t != 0 else mp.mpf("1e-15"))
    cs, _ = mp.chebyfit(safe, [lo, hi], deg + 1, error=True)
    cs = [f32(c) for c in reversed(cs)]  # chebyfit gives highest degree first
    worst = mp.mpf(0)
    n = 4000
    for i in range(n + 1):
        t = lo + (hi - lo) * mp.mpf(i) / n
        if t == 0:
            continue
        want, got = exact(t, None), exact(t, horner(cs, t))
        worst = max(worst, abs((got - want) / want))
    print(f"{name}: degree {deg} on [{mp.nstr(lo, 6)}, {mp.nstr(hi, 6)}], "
          f"max relative error {mp.nstr(worst, 3)} (2^{mp.nstr(mp.log(worst, 2), 4)})")
    for k, c in enumerate(cs):
        print(f"  c{k} = {hexf(c)}f  /* {c!r} */")
    return cs


LN2_2 = mp.log(2) / 2
# exp(r) = 1 + r + r^2 * P(r), |r| <= ln2/2
fit("expf: P(r) = (e^r - 1 - r) / r^2",
    lambda r: (mp.exp(r) - 1 - r) / r**2, -LN2_2 * 1.01, LN2_2 * 1.01, 5,
    lambda r, p: mp.exp(r) if p is None else 1 + r + r * r * p)

# log(1+f) = f - f^2/2 + s (f^2/2 + R), s = f/(2+f), R = z P(z), z = s^2,
# |s| <= (sqrt2-1)/(sqrt2+1)
S = (mp.sqrt(2) - 1) / (mp.sqrt(2) + 1)


def log_exact(z, p):
    s = mp.sqrt(z)
    f = 2 * s / (1 - s)
    if p is None:
        return mp.log(1 + f)
    return f - f * f / 2 + s * (f * f / 2 + z * p)


fit("logf: P(z) = (2 atanh(s) - 2s) / (s z), z = s^2",
    lambda z: (2 * mp.atanh(mp.sqrt(z)) - 2 * mp.sqrt(z)) / (mp.sqrt(z) * z),
    mp.mpf(0), S * S * 1.01, 3, log_exact)

# tanh(x) = x + x z P(z), z = x^2, |x| < 0.55
TS = mp.mpf("0.5625")
fit("tanhf: P(z) = (tanh(x)/x - 1) / z, z = x^2",
    lambda z: (mp.tanh(mp.sqrt(z)) / mp.sqrt(z) - 1) / z, mp.mpf(0), TS * TS, 5,
    lambda z, p: mp.tanh(mp.sqrt(z)) if p is None else mp.sqrt(z) * (1 + z * p))

# Cody-Waite split of ln 2: LN2_HI has 16 significant bits, so k * LN2_HI is
# exact for |k| < 2^8 (every k that exp and log meet).
hi = mp.floor(mp.log(2) * 2**16) / 2**16
lo = f32(mp.log(2) - hi)
print(f"LN2_HI = {hexf(hi)}f, LN2_LO = {hexf(lo)}f")
print(f"LOG2E = {hexf(f32(1 / mp.log(2)))}f")
