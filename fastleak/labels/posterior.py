"""Label counts as a posterior: a prior over count vectors, the final layer's evidence, and a sampler.

For one observation of B samples and C classes the unknown is a count vector n (n_c >= 0,
Σ n_c = B). Its log posterior is a sum of three parts:

- the **prior**: a mixture of the label mixes the server expects of its clients (a multinomial on
  the class frequencies for IID clients, a Dirichlet-multinomial for clients whose mix varies,
  equal shares of a few classes for pathological splits), or one of them (``make_prior``);
- **presence**: with cross-entropy a class absent from the batch has a positive bias-gradient entry
  and, with non-negative penultimate features, no negative weight-gradient entry; a class whose
  row shows a negative entry is present, n_c >= 1 (a constraint). An undetected class holding
  n_c samples was missed with probability β^{n_c} (β fitted on public batches) or, without public
  data, 1/(n_c + 1) (β uniform on [0, 1]);
- **class-conditional evidence** (with public data): the final layer's gradient g is a sum of one
  contribution per sample, so g ≈ Σ_k n_k μ_k with μ_k the mean contribution of a class-k sample
  (``conditional``), with noise whose covariance S the public data gives as well. The residual
  r²(n) = (g − Mn)ᵀS⁻¹(g − Mn) enters through a Student-t, −(ν + d)/(2τ)·log(1 + r²/ν), or its
  Gaussian limit −r²/(2τ); the temperature τ and the degrees of freedom ν are fitted on public
  batches (``fit_noise``), which widens the posterior where the contributions are heavy-tailed (a
  confident model: a few hard samples carry the whole gradient).

``sample`` draws count vectors by pairwise Gibbs sweeps (each step redistributes the samples of two
classes exactly from their conditional), vectorised over observations and chains, and returns the
MAP count vector (best visited state, then unit moves uphill), the posterior mean and the per-class
marginals, from which ``interval`` reads equal-tailed credible intervals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fastleak.errors import InvalidValueError

NEG_INF = float("-inf")


@dataclass(frozen=True)
class Prior:
    """A prior over count vectors: a mixture of components, each a product of per-class terms.

    ``frequencies`` [C]: class frequencies (for starting points and the point guess);
    ``components``: tuples ``(kind, log_weight, parameter)``: ``("multinomial", w, frequencies)``,
    ``("dirichlet", w, concentration)`` (Dirichlet-multinomial), ``("shards", w, None)``: a batch
    split as equally as possible over k classes, k uniform in 1..min(C, B), the classes uniform."""

    frequencies: torch.Tensor
    components: tuple[tuple[str, float, torch.Tensor | None], ...]

    def terms(self, values: torch.Tensor, classes: torch.Tensor,
              num_samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-component log terms of classes ``classes`` [N, K] holding ``values`` [N, K, A]
        samples, in observations of ``num_samples`` [N] samples: their finite part [N, K, A, M] and
        whether each is outside the component's support (log term -inf) [N, K, A, M]."""
        out, bad = [], []
        idx = classes[..., None]
        for kind, _, param in self.components:
            if kind == "multinomial":
                out.append((-torch.lgamma(values + 1) + values * param.log()[idx])[..., None])
                bad.append(torch.zeros_like(out[-1], dtype=torch.bool))
            elif kind == "dirichlet":
                out.append((torch.lgamma(values + param[idx]) - torch.lgamma(values + 1))[..., None])
                bad.append(torch.zeros_like(out[-1], dtype=torch.bool))
            else:
                ks = torch.arange(1, len(self.frequencies) + 1, dtype=values.dtype, device=values.device)
                q = torch.div(num_samples.to(values.dtype)[:, None], ks, rounding_mode="floor")
                r = num_samples.to(values.dtype)[:, None] - q * ks
                q, r = q[:, None, None, :], r[:, None, None, :]
                v = values[..., None]
                ok = (v == 0) | ((v == q) & (q > 0)) | ((v == q + 1) & (r > 0))
                out.append(torch.zeros_like(v * q))
                bad.append(~ok)
        return torch.cat(out, -1), torch.cat(bad, -1)

    def constants(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Per-observation, per-component log weights and normalisers [N, M]."""
        b = num_samples.double()
        c = len(self.frequencies)
        cols = []
        for kind, weight, param in self.components:
            if kind == "multinomial":
                cols.append((weight + torch.lgamma(b + 1))[:, None])
            elif kind == "dirichlet":
                total = param.sum()
                cols.append((weight + torch.lgamma(b + 1) + torch.lgamma(total) - torch.lgamma(b + total)
                             - torch.lgamma(param).sum())[:, None])
            else:
                ks = torch.arange(1, c + 1, dtype=torch.float64, device=b.device)
                kmax = torch.minimum(b, torch.tensor(float(c), dtype=torch.float64, device=b.device))
                log_count = torch.stack([_log_splits(c, int(bi), ks) for bi in b.tolist()])
                usable = ks[None, :] <= kmax[:, None]
                col = weight - kmax.log()[:, None] - log_count
                cols.append(torch.where(usable, col, torch.full_like(col, NEG_INF)))
        return torch.cat(cols, 1).to(num_samples.device)

    def mode(self, num_samples: torch.Tensor) -> torch.Tensor:
        """The largest-remainder rounding of B·frequencies [N, C]: the frequencies' point guess."""
        from fastleak.labels.rounding import largest_remainder

        return largest_remainder(num_samples.double()[:, None] * self.frequencies[None], num_samples).double()

    def log_prob(self, counts: torch.Tensor, num_samples: torch.Tensor) -> torch.Tensor:
        """Log prior of count vectors [N, K, C] of observations of ``num_samples`` [N]."""
        return _mix(*_component_totals(self, counts, num_samples))


def _mix(finite: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """The mixture's log value from its components' finite parts and support violations."""
    return torch.logsumexp(torch.where(bad > 0, torch.full_like(finite, NEG_INF), finite), -1)


def _log_splits(num_classes: int, num_samples: int, ks: torch.Tensor) -> torch.Tensor:
    """log of the number of count vectors with entries in {0, q, q + 1} (q = B // k; q + 1 only when
    k does not divide B) that sum to B, for every k in ``ks``: the support of a shards component."""
    out = []
    for k in ks.long().tolist():
        q, r = divmod(num_samples, k)
        if q == 0:
            out.append(float("inf"))
            continue
        total = 0
        top = num_classes if r else 0
        for a in range(0, top + 1):
            rest = num_samples - a * (q + 1)
            if rest < 0 or rest % q:
                continue
            bq = rest // q
            if a + bq <= num_classes:
                total += math.comb(num_classes, a) * math.comb(num_classes - a, bq)
        out.append(math.log(total) if total else float("inf"))
    return torch.tensor(out, dtype=torch.float64, device=ks.device)


def make_prior(spec: str, frequencies: torch.Tensor, clients: tuple[str, ...] = ("iid",)) -> Prior:
    """``clients``: a mixture with one equal-weight component per client label distribution of
    ``clients`` ("iid": multinomial on ``frequencies``; "dirichlet:A": Dirichlet-multinomial with
    concentration A·C·frequencies; "shards": equal splits over k classes); ``public``: multinomial on
    ``frequencies``; ``uniform``: multinomial on equal frequencies; ``dirichlet:A``: one
    Dirichlet-multinomial (A = 0.5 for the Dirichlet(0.5) client splits of non-IID benchmarks)."""
    f = frequencies.double()
    f = f / f.sum()
    name, _, arg = spec.partition(":")

    def component(kind: str, weight: float) -> tuple[str, float, torch.Tensor | None]:
        kname, _, karg = kind.partition(":")
        if kname == "iid":
            return ("multinomial", weight, f)
        if kname == "dirichlet":
            alpha = _positive(karg, spec)
            return ("dirichlet", weight, alpha * f.numel() * f)
        return ("shards", weight, None)

    if name == "clients" and not arg:
        w = -math.log(len(clients))
        parts = tuple(component(k, w) for k in clients)
        if all(kind == "shards" for kind, _, _ in parts):
            # shards alone leave most count vectors impossible: a faint multinomial keeps every one possible
            parts += (("multinomial", math.log(1e-6), f),)
        return Prior(f, parts)
    if name == "public" and not arg:
        return Prior(f, (("multinomial", 0.0, f),))
    if name == "uniform" and not arg:
        return Prior(torch.full_like(f, 1.0 / f.numel()), (("multinomial", 0.0, torch.full_like(f, 1.0 / f.numel())),))
    if name == "dirichlet" and arg:
        return Prior(f, (component(spec, 0.0),))
    raise InvalidValueError("LabelConfig.prior must be 'clients', 'public', 'uniform' or 'dirichlet:A' with A > 0, "
                            f"got {spec!r}")


def _positive(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and math.isfinite(value)):
        raise InvalidValueError(f"LabelConfig.prior must be 'clients', 'public', 'uniform' or 'dirichlet:A' with A > 0,"
                                f" got {spec!r}")
    return value


@dataclass(frozen=True)
class Evidence:
    """What one stack of N observations says about their counts.

    ``quad`` [N, C, C], ``lin`` [N, C], ``offset`` [N]: r²(n) = nᵀ·quad·n − 2·linᵀn + offset (None
    without class-conditional statistics); ``temperature`` τ and ``dof`` ν (None: Gaussian) of its
    likelihood; ``detected`` [N, C]: classes shown present; ``log_miss`` [N, C]: log β of the
    undetected classes (None: β uniform, a miss of n samples has probability 1/(n + 1));
    ``dim``: the dimension d of the evidence vector; ``silent`` [N]: observations whose gradient
    shows no class at all (a zero gradient), for which not being shown says nothing either."""

    detected: torch.Tensor
    quad: torch.Tensor | None = None
    lin: torch.Tensor | None = None
    offset: torch.Tensor | None = None
    temperature: float = 1.0
    dof: float | None = None
    dim: int = 1
    log_miss: torch.Tensor | None = None
    silent: torch.Tensor | None = None

    @property
    def informative(self) -> bool:
        return self.quad is not None and math.isfinite(self.temperature)

    def likelihood(self, r2: torch.Tensor) -> torch.Tensor:
        r2 = r2.clamp_min(0)
        if self.dof is None:
            return -0.5 * r2 / self.temperature
        return -(self.dof + self.dim) / (2 * self.temperature) * torch.log1p(r2 / self.dof)

    def presence_terms(self, values: torch.Tensor, classes: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Presence log-likelihood of classes ``classes`` [N, K] of observations ``obs`` [N, 1]
        holding ``values`` [N, K, A] samples."""
        det = self.detected[obs, classes][..., None]
        if self.log_miss is None:
            miss = -torch.log1p(values)
        else:
            miss = values * self.log_miss[obs, classes][..., None]
        if self.silent is not None:
            miss = torch.where(self.silent[obs][..., None], torch.zeros_like(miss), miss)
        return torch.where(det, torch.where(values > 0, torch.zeros_like(values), torch.full_like(values, NEG_INF)),
                           miss)


@dataclass(frozen=True)
class Result:
    """Per observation: ``map`` [N, C] (the most probable count vector found), ``mean`` [N, C]
    (posterior mean counts) and ``marginals`` [N, C, Bmax + 1] (P(n_c = m))."""

    map: torch.Tensor
    mean: torch.Tensor
    marginals: torch.Tensor


def feasible_detected(detected: torch.Tensor, num_samples: torch.Tensor) -> torch.Tensor:
    """``detected`` with every row that names more classes than its batch has samples cleared."""
    too_many = detected.sum(1) > num_samples
    return detected & ~too_many[:, None]


def _start(prior: Prior, detected: torch.Tensor, num_samples: torch.Tensor) -> torch.Tensor:
    """One sample for every detected class, the rest spread by the prior's frequencies [N, C]."""
    from fastleak.labels.rounding import largest_remainder

    base = detected.double()
    left = num_samples - detected.sum(1)
    return base + largest_remainder(left.double()[:, None] * prior.frequencies[None], left).double()


def _component_totals(prior: Prior, counts: torch.Tensor,
                      num_samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-component log prior of count vectors [N, K, C]: finite parts and numbers of classes
    outside the component's support, both [N, K, M] (a -inf constant counts as one)."""
    n, k, c = counts.shape
    const = prior.constants(num_samples)[:, None, :].expand(n, k, -1)
    bad = torch.isinf(const).double()
    total = torch.where(bad > 0, torch.zeros_like(const), const).clone()
    for cls in range(c):
        cl = torch.full((n, k), cls, dtype=torch.long, device=counts.device)
        fin, out = prior.terms(counts[..., cls:cls + 1], cl, num_samples)
        total = total + fin[:, :, 0]
        bad = bad + out[:, :, 0].double()
    return total, bad


def _presence_total(ev: Evidence, counts: torch.Tensor) -> torch.Tensor:
    n, k, c = counts.shape
    obs = torch.arange(n, device=counts.device)[:, None].expand(n, k)
    total = torch.zeros(n, k, dtype=torch.float64, device=counts.device)
    for cls in range(c):
        cl = torch.full((n, k), cls, dtype=torch.long, device=counts.device)
        total = total + ev.presence_terms(counts[..., cls:cls + 1], cl, obs)[..., 0]
    return total


def log_posterior(prior: Prior, ev: Evidence, counts: torch.Tensor, num_samples: torch.Tensor) -> torch.Tensor:
    """Unnormalised log posterior of count vectors ``counts`` [N, K, C]."""
    total = _mix(*_component_totals(prior, counts, num_samples)) + _presence_total(ev, counts)
    if ev.informative:
        total = total + ev.likelihood(_r2(ev, counts))
    return total


def _r2(ev: Evidence, counts: torch.Tensor) -> torch.Tensor:
    quad = (torch.einsum("nkc,ncd->nkd", counts, ev.quad) * counts).sum(-1)
    return quad - 2 * (counts * ev.lin[:, None, :]).sum(-1) + ev.offset[:, None]


def sample(prior: Prior, ev: Evidence, num_samples: torch.Tensor, *, chains: int = 16, sweeps: int = 40,
           seed: int = 0) -> Result:
    """Pairwise Gibbs sampling of the count posterior of N observations with batch sizes
    ``num_samples`` [N] (see the module docstring)."""
    device = ev.detected.device
    n_obs, c = ev.detected.shape
    b = num_samples.to(device).long()
    bmax = int(b.max())
    gen = torch.Generator(device="cpu").manual_seed(seed)
    counts = _start(prior, ev.detected, b)[:, None, :].expand(n_obs, chains, c).clone()
    obs = torch.arange(n_obs, device=device)[:, None].expand(n_obs, chains)
    informative = ev.informative
    if informative:
        qn = torch.einsum("nkc,ncd->nkd", counts, ev.quad)
        r2 = _r2(ev, counts)
    comp, comp_bad = _component_totals(prior, counts, b)
    hist = torch.zeros(n_obs, c, bmax + 1, dtype=torch.float64, device=device)
    values = torch.arange(bmax + 1, dtype=torch.float64, device=device)
    lp = log_posterior(prior, ev, counts, b)
    best, best_lp = counts[:, 0].clone(), lp[:, 0].clone()
    steps = max(sweeps * c, 2 * c)
    burn = steps // 4
    recorded = 0
    a = values.expand(n_obs, chains, bmax + 1)
    for step in range(steps):
        i = torch.randint(0, c, (n_obs, chains), generator=gen).to(device)
        j = (i + torch.randint(1, c, (n_obs, chains), generator=gen).to(device)) % c
        ni, nj = counts.gather(2, i[..., None])[..., 0], counts.gather(2, j[..., None])[..., 0]
        total = ni + nj
        rest = (total[..., None] - a).clamp_min(0)
        fin_i, bad_i = prior.terms(ni[..., None], i, b)
        fin_j, bad_j = prior.terms(nj[..., None], j, b)
        fin_ai, bad_ai = prior.terms(a, i, b)
        fin_aj, bad_aj = prior.terms(rest, j, b)
        comp_a = (comp - fin_i[:, :, 0] - fin_j[:, :, 0])[:, :, None, :] + fin_ai + fin_aj
        bad_a = (comp_bad - bad_i[:, :, 0].double() - bad_j[:, :, 0].double())[:, :, None, :] + bad_ai + bad_aj
        lg = _mix(comp_a, bad_a) + ev.presence_terms(a, i, obs) + ev.presence_terms(rest, j, obs)
        if informative:
            di = a - ni[..., None]
            q = ev.quad[obs, i, i] + ev.quad[obs, j, j] - 2 * ev.quad[obs, i, j]
            slope = 2 * (qn.gather(2, i[..., None]) - qn.gather(2, j[..., None])) \
                - 2 * (ev.lin[obs, i] - ev.lin[obs, j])[..., None]
            r2_a = r2[..., None] + di * slope + di * di * q[..., None]
            lg = lg + ev.likelihood(r2_a)
        lg = torch.where(a <= total[..., None], lg, torch.full_like(lg, NEG_INF))
        lg = torch.where(torch.isnan(lg), torch.full_like(lg, NEG_INF), lg)
        gumbel = -torch.log(-torch.log(torch.rand(lg.shape, generator=gen, dtype=torch.float64).clamp_min(1e-300)))
        pick = (lg + gumbel.to(device)).argmax(-1)
        new_i = pick.double()
        delta = new_i - ni
        lp = lp + lg.gather(2, pick[..., None])[..., 0] - lg.gather(2, ni.long()[..., None])[..., 0]
        counts = counts.scatter(2, i[..., None], new_i[..., None]).scatter(2, j[..., None], (total - new_i)[..., None])
        where = pick[..., None, None].expand(-1, -1, 1, comp_a.shape[-1])
        comp, comp_bad = comp_a.gather(2, where)[:, :, 0], bad_a.gather(2, where)[:, :, 0]
        if informative:
            qn = qn + delta[..., None] * (ev.quad[obs, i] - ev.quad[obs, j])
            r2 = r2_a.gather(2, pick[..., None])[..., 0]
        top = lp.argmax(1)
        top_lp = lp.gather(1, top[:, None])[:, 0]
        better = top_lp > best_lp
        best = torch.where(better[:, None], counts[torch.arange(n_obs, device=device), top], best)
        best_lp = torch.maximum(best_lp, top_lp)
        if step >= burn and (step - burn) % c == 0:
            hist.scatter_add_(2, counts.long().permute(0, 2, 1), torch.ones(n_obs, c, chains, dtype=torch.float64,
                                                                            device=device))
            recorded += chains
    marginals = hist / max(recorded, 1)
    mean = (marginals * values).sum(-1)
    return Result(map=best_of(prior, ev, [climb(prior, ev, best, b), *equal_splits(ev.detected, mean, b)], b),
                  mean=mean, marginals=marginals)


def equal_splits(detected: torch.Tensor, mean: torch.Tensor, num_samples: torch.Tensor) -> list[torch.Tensor]:
    """For k = 1 .. C, the batch split as equally as possible over k classes [N, C]: the detected
    classes first, then those with the largest posterior mean, the larger shares to the larger means.
    Isolated maxima of a prior with equal-share components, which unit moves cannot walk between."""
    n_obs, c = detected.shape
    order = torch.argsort(detected.double() * (mean.max() + 1) + mean, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(c, device=order.device).expand(n_obs, c))
    splits = []
    b = num_samples.to(detected.device).long()[:, None]
    for k in range(1, c + 1):
        q, r = torch.div(b, k, rounding_mode="floor"), b % k
        counts = torch.where(rank < k, q + (rank < r).long(), torch.zeros_like(rank)).double()
        splits.append(counts)
    return splits


def best_of(prior: Prior, ev: Evidence, candidates: list[torch.Tensor], num_samples: torch.Tensor) -> torch.Tensor:
    """Per observation, the candidate count vector [N, C] with the highest log posterior."""
    stacked = torch.stack(candidates, 1)
    lp = log_posterior(prior, ev, stacked, num_samples)
    lp = torch.where(torch.isnan(lp), torch.full_like(lp, NEG_INF), lp)
    return stacked[torch.arange(stacked.shape[0], device=stacked.device), lp.argmax(1)]


def climb(prior: Prior, ev: Evidence, counts: torch.Tensor, num_samples: torch.Tensor,
          max_moves: int | None = None) -> torch.Tensor:
    """Unit moves (one sample from class i to class j) that raise the log posterior, best first,
    until none does: a local maximum near ``counts`` [N, C]."""
    n_obs, c = counts.shape
    device = counts.device
    obs = torch.arange(n_obs, device=device)[:, None].expand(n_obs, c)
    classes = torch.arange(c, device=device).expand(n_obs, c)
    counts = counts.clone()
    limit = max_moves if max_moves is not None else int(counts.sum(1).max()) * c + c
    eye = torch.eye(c, dtype=torch.bool, device=device)
    for _ in range(limit):
        here = counts[..., None]
        around = torch.cat([here - 1, here, here + 1], -1)
        valid = around >= 0
        around = around.clamp_min(0)
        pres = ev.presence_terms(around, classes, obs).masked_fill(~valid, NEG_INF)
        fin, out = prior.terms(around, classes, num_samples)  # [N, C, 3, M]
        out = out.double() + (~valid[..., None]).double()
        comp, comp_bad = _component_totals(prior, counts[:, None, :], num_samples)
        comp, comp_bad = comp[:, 0], comp_bad[:, 0]  # [N, M]
        moved = (comp[:, None, None, :] - fin[:, :, None, 1, :] - fin[:, None, :, 1, :]
                 + fin[:, :, None, 0, :] + fin[:, None, :, 2, :])  # [N, i, j, M]
        moved_bad = (comp_bad[:, None, None, :] - out[:, :, None, 1, :] - out[:, None, :, 1, :]
                     + out[:, :, None, 0, :] + out[:, None, :, 2, :])
        delta = _mix(moved, moved_bad) - _mix(comp, comp_bad)[:, None, None]
        delta = delta + (pres[..., 0] - pres[..., 1])[:, :, None] + (pres[..., 2] - pres[..., 1])[:, None, :]
        if ev.informative:
            qn = torch.einsum("nc,ncd->nd", counts, ev.quad)
            r2 = _r2(ev, counts[:, None, :])[:, 0]
            diag = ev.quad.diagonal(dim1=1, dim2=2)
            r2_move = (r2[:, None, None] + 2 * (qn[:, None, :] - qn[:, :, None])
                       + diag[:, :, None] + diag[:, None, :] - 2 * ev.quad
                       - 2 * (ev.lin[:, None, :] - ev.lin[:, :, None]))
            delta = delta + ev.likelihood(r2_move) - ev.likelihood(r2)[:, None, None]
        delta = delta.masked_fill(eye, NEG_INF)
        delta = torch.where(torch.isnan(delta), torch.full_like(delta, NEG_INF), delta)
        gain_best, where = delta.reshape(n_obs, -1).max(1)
        move = gain_best > 1e-9
        if not bool(move.any()):
            break
        src, dst = where // c, where % c
        step = move.double()
        rows = torch.arange(n_obs, device=device)
        counts[rows, src] -= step
        counts[rows, dst] += step
    return counts


def interval(marginals: torch.Tensor, level: float = 0.9) -> torch.Tensor:
    """Equal-tailed credible intervals [N, C, 2] (long) from marginals [N, C, A]: the smallest m
    with P(n <= m) >= (1 − level)/2 and the smallest m with P(n <= m) >= (1 + level)/2."""
    cdf = marginals.cumsum(-1)
    total = cdf[..., -1:].clamp_min(1e-300)
    cdf = cdf / total
    lo = (cdf < (1 - level) / 2 - 1e-12).sum(-1)
    hi = (cdf < (1 + level) / 2 - 1e-12).sum(-1)
    return torch.stack([lo, hi], -1).clamp_max(marginals.shape[-1] - 1)


def marginal_log_score(marginals: torch.Tensor, truth: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    """Mean log marginal probability of the true counts ``truth`` [N, C] (a proper score, higher is
    better), each probability floored at ``floor`` so that one class cannot dominate."""
    idx = truth.long().clamp_max(marginals.shape[-1] - 1)[..., None]
    p = marginals.gather(-1, idx)[..., 0]
    return p.clamp_min(floor).log().mean()
