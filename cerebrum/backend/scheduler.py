"""The engine's decisions, pure: slot choice, the next batch, threads per step, cache eviction.

Everything here works on plain values (token lists, counts, readings) so it
is tested without a model; ``cerebrum.backend.engine`` carries the decisions
out on the llama context.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import attrs


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    i = 0
    # Compare in blocks first: histories of thousands of tokens are compared
    # on every arrival, and list slices compare in C.
    block = 256
    while i + block <= n and a[i:i + block] == b[i:i + block]:
        i += block
    while i < n and a[i] == b[i]:
        i += 1
    return i


@attrs.frozen
class SlotInfo:
    """What the scheduler needs to know about one slot (one llama sequence id)."""

    slot: int
    cached: tuple[int, ...]
    """Tokens whose KV state the slot holds now."""
    free: bool
    last_used: float


@attrs.frozen
class CacheInfo:
    """One saved sequence state in the RAM prompt cache."""

    key: int
    tokens: tuple[int, ...]


@attrs.frozen
class SlotChoice:
    """Where a new request goes and what it can reuse."""

    slot: int
    reuse: int
    """Prompt tokens already in the slot's KV (after a restore, if any): not prefilled again."""
    restore: int | None = None
    """Cache entry to load into the slot before reuse (its prefix beats the slot's own)."""
    save_first: bool = False
    """Save the slot's current state to the cache first: the new request overwrites it."""


MIN_SAVE_TOKENS = 16
"""Below this a saved state is not worth its bytes: prefilling it again is cheap."""


def choose_slot(prompt: Sequence[int], slots: Sequence[SlotInfo],
                cache: Sequence[CacheInfo] = ()) -> SlotChoice | None:
    """Pick the free slot for ``prompt``: the longest common prefix wins, then the LRU slot.

    A cache entry is restored when its prefix with the prompt is longer than
    the best free slot's. The slot that is overwritten is the one that loses
    the least: the best prefix match, else the least recently used; its state
    is saved first unless the new prompt keeps most of it anyway.
    Returns None when no slot is free. At least one prompt token is always
    left to compute: the logits of the last prompt token start generation.
    """
    free = [s for s in slots if s.free]
    if not free:
        return None
    limit = max(0, len(prompt) - 1)
    scored = [(min(common_prefix(prompt, s.cached), limit), s) for s in free]
    best_len, best = max(scored, key=lambda item: (item[0], -item[1].last_used))
    if best_len == 0:
        # Nothing shared: take the emptiest, else least recently used slot.
        best = min(free, key=lambda s: (len(s.cached) > 0, s.last_used))
    restore: int | None = None
    restore_len = best_len
    for entry in cache:
        length = min(common_prefix(prompt, entry.tokens), limit)
        if length > restore_len:
            restore, restore_len = entry.key, length
    if restore is not None:
        # Restore into the slot that loses least, not into the best match.
        best = min(free, key=lambda s: (len(s.cached) > 0, s.last_used))
    reuse = restore_len if restore is not None else best_len
    # The slot's own tokens beyond what this request keeps would be lost.
    kept = best_len if restore is None else 0
    save_first = len(best.cached) - kept >= MIN_SAVE_TOKENS and kept < len(best.cached) // 2
    return SlotChoice(best.slot, reuse, restore, save_first)


@attrs.frozen
class SeqDemand:
    """One running sequence's wish for the next step."""

    seq: int
    prompt_left: int
    """Prompt tokens still to prefill; 0 once generating (then it wants one token)."""
    arrived: int
    """Arrival order (smaller is older)."""
    began: int | None = None
    """For a generating sequence: the arrival clock when its first token came."""
    passed: int = 0
    """For a prefilling one: steps it has been passed over (see ``MAX_PASSES``)."""


@attrs.frozen
class StepCost:
    """What one decode step costs: ``fixed + per_token * tokens`` seconds."""

    fixed: float
    per_token: float

    def of(self, tokens: int) -> float:
        return self.fixed + self.per_token * tokens


@attrs.define
class StepCostModel:
    """The step cost fitted online to the steps decoded (least squares, recent steps weigh most).

    Whether several prompts should share a step depends on it: where a step's
    cost is mostly its fixed part (weights read once, threads woken once),
    prompts prefilled together finish almost as soon as one alone would; where
    it grows with every token (measured on this project's 2-core VPSs: a
    20-token prompt costs 7 times a one-token step), each prompt put beside
    another delays both.
    """

    decay: float = 0.995
    """Per step: the fit follows the last few hundred steps (a few answers),
    so one prompt step still counts among the single-token steps after it."""
    min_spread: float = 1.0
    """Standard deviation (tokens) of the steps' sizes the fit needs to be trusted."""
    _w: float = 0.0
    _x: float = 0.0
    _y: float = 0.0
    _xx: float = 0.0
    _xy: float = 0.0

    def observe(self, tokens: int, seconds: float) -> None:
        if tokens <= 0 or seconds <= 0:
            return
        d = self.decay
        self._w = self._w * d + 1
        self._x = self._x * d + tokens
        self._y = self._y * d + seconds
        self._xx = self._xx * d + tokens * tokens
        self._xy = self._xy * d + tokens * seconds

    def estimate(self) -> StepCost | None:
        """The fitted cost, or None until steps of different sizes have been seen."""
        if self._w <= 0:
            return None
        mean_x = self._x / self._w
        variance = self._xx / self._w - mean_x * mean_x
        if variance < self.min_spread ** 2:
            return None
        per_token = (self._xy / self._w - mean_x * self._y / self._w) / variance
        if per_token <= 0:
            return None
        fixed = max(0.0, self._y / self._w - per_token * mean_x)
        return StepCost(fixed, per_token)


MAX_PASSES = 8
"""Steps a prompt may be passed over for shorter ones before it goes first."""


def plan_batch(demands: Sequence[SeqDemand], budget: int,
               cost: StepCost | None = None) -> list[tuple[int, int]]:
    """The next decode step: ``(seq, n_tokens)`` pairs within ``budget`` tokens.

    Every generating sequence gets its one token (a long new prompt never
    freezes running streams); the rest of the budget goes to prompts, the
    shortest first (the order that gives the lowest mean time to first
    token), save that one passed over ``MAX_PASSES`` times goes first.

    Without a ``cost`` the prompts fill the budget (chunked prefill). With
    one, the step takes the group of shortest prompts that minimises the sum
    of every waiting prompt's time to its first token (``_first_group``): on
    a CPU where each prompt token costs nearly what a step does, four
    prompts of a burst then finish one step after another instead of all at
    the end of one long step, and the median first token comes in about 60%
    of the time.

    A sequence that began generating while a prompt was already waiting gives
    its token up to that prompt in a step that completes it: that prompt's
    first token was asked for first (so a burst's later first tokens are not
    delayed by the earlier ones' second tokens). Steps that complete no such
    prompt carry every generating sequence, so none waits more than a few
    steps. If the generating sequences alone exceed the budget, the oldest
    are served and the rest wait one step.
    """
    generating = sorted((d for d in demands if d.prompt_left == 0), key=lambda d: d.arrived)
    prompts = sorted((d for d in demands if d.prompt_left > 0),
                     key=lambda d: (d.passed < MAX_PASSES,
                                    d.arrived if d.passed >= MAX_PASSES else d.prompt_left,
                                    d.arrived))
    # Generating sequences that no waiting prompt was asked for before.
    steady = {d.seq for d in generating
              if d.began is None or all(p.arrived > d.began for p in prompts)}
    room = max(0, budget - len(steady))
    chosen: list[tuple[int, int]] = []
    if prompts and cost is not None and prompts[0].prompt_left <= room:
        k = _first_group([p.prompt_left for p in prompts], room, len(steady), cost)
        chosen = [(p.seq, p.prompt_left) for p in prompts[:k]]
    else:
        left = room
        for p in prompts:
            if left == 0:
                break
            take = min(p.prompt_left, left)
            chosen.append((p.seq, take))
            left -= take
    # ``chosen`` runs along ``prompts``: the prompts whose first token this step gives.
    completed = [p.arrived for (_, take), p in zip(chosen, prompts[:len(chosen)], strict=True)
                 if take == p.prompt_left]
    first_arrival = min(completed, default=None)
    plan: list[tuple[int, int]] = []
    left = budget
    for d in generating:
        if left == 0:
            break
        if d.seq not in steady and first_arrival is not None and first_arrival < (d.began or 0):
            continue  # gives its token to an older first token this step
        plan.append((d.seq, 1))
        left -= 1
    for seq, take in chosen:
        take = min(take, left)
        if take <= 0:
            break
        plan.append((seq, take))
        left -= take
    return plan


def _first_group(lengths: list[int], room: int, decoding: int, cost: StepCost) -> int:
    """How many of ``lengths`` (shortest first) to prefill in the next step.

    Minimises the sum of the prompts' completion times when the prompts are
    done in consecutive groups, each a step of ``cost`` with ``decoding``
    other tokens beside it; prompts longer than ``room`` take a group (and
    several steps) of their own.
    """
    n = len(lengths)
    # best[i]: least sum of completion times of prompts i.. from their start.
    best = [0.0] * (n + 1)
    first = [1] * (n + 1)
    for i in range(n - 1, -1, -1):
        waiting = n - i
        best[i] = float("inf")
        tokens = 0
        for j in range(i, n):
            tokens += lengths[j]
            if j > i and tokens > room:
                break
            steps = max(1, -(-tokens // max(1, room)))
            seconds = steps * cost.fixed + cost.per_token * (tokens + decoding * steps)
            total = waiting * seconds + best[j + 1]
            if total < best[i]:
                best[i], first[i] = total, j + 1 - i
    return first[0]


@attrs.define
class ThreadTuner:
    """Each decode step's thread count, chosen by the speed it is measured to give.

    llama.cpp's threads wait for each other at every step, so when another
    process holds a core, the thread that shares it stalls the rest: with one
    busy neighbour on 2 cores, 2 threads decode at a fraction of 1 thread's
    speed; on a quiet host 2 threads are much faster. A CPU reading cannot
    tell the two apart reliably (our own spinning threads, the client reading
    the stream and sampling jitter all blur it: the reading once kept a quiet
    host on one thread, at 0.6x its speed), so the tuner asks the decoder
    itself. It keeps a moving average of seconds per step for each (batch
    size, thread count), stays on the fastest, and now and then probes a
    neighbouring count: often after a change, more rarely while the choice
    holds, and at once when the current choice's average turns much slower
    than when it was confirmed (a neighbour has just started).

    On a shared VM single steps are noisy (another guest's burst doubles one
    step now and then): a probe lasts ``probe_steps`` steps and counts their
    median, one slow step alone triggers nothing, and a change needs a
    ``margin``. (Measured here with single-step probes: a burst made one
    thread look faster than two, and the tuner then spent a whole 4-stream
    round on one thread at 36 ms a step against 22.)

    Only decode steps of a known batch size are measured (``key``); prompt
    chunks vary too much in cost and use the current choice.
    """

    max_threads: int
    probe_every_min: int = 16
    probe_every_max: int = 256
    alpha: float = 0.25
    """Weight of a new sample in a moving average."""
    slowdown: float = 1.4
    """Probe at once when the current choice's average turns this much slower."""
    probe_steps: int = 3
    """Steps a probe lasts; their median is its figure."""
    margin: float = 0.1
    """A probed count replaces the current one only when this much faster."""
    current: int = attrs.field(init=False)
    probes: int = attrs.field(init=False, default=0)
    switches: int = attrs.field(init=False, default=0)
    _costs: dict[tuple[int, int], float] = attrs.field(init=False, factory=dict)
    _confirmed: dict[int, float] = attrs.field(init=False, factory=dict)
    _interval: int = attrs.field(init=False)
    _countdown: int = attrs.field(init=False)
    _probing: int | None = attrs.field(init=False, default=None)
    _probe_key: int | None = attrs.field(init=False, default=None)
    _probe_samples: list[float] = attrs.field(init=False, factory=list)
    _direction: int = attrs.field(init=False, default=-1)

    def __attrs_post_init__(self) -> None:
        self.max_threads = max(1, self.max_threads)
        self.current = self.max_threads
        self._interval = self.probe_every_min
        self._countdown = self.probe_every_min

    def choose(self, key: int | None) -> int:
        """Threads for the next step; ``key`` is its batch size, None for a prompt chunk."""
        if self.max_threads == 1 or key is None:
            return self.current
        if self._probing is not None:
            # A probe runs on its own batch size; other steps keep the current choice.
            return self._probing if key == self._probe_key else self.current
        if (key, self.current) not in self._costs:
            return self.current  # measure the current choice at this size first
        self._countdown -= 1
        if self._countdown > 0:
            return self.current
        probe = self._neighbour()
        self._probing, self._probe_key, self._probe_samples = probe, key, []
        self.probes += 1
        return probe

    def observe(self, key: int | None, threads: int, seconds: float) -> None:
        """Record how long a step of batch size ``key`` took on ``threads`` threads."""
        if self.max_threads == 1 or key is None or seconds <= 0:
            return
        cell = (key, threads)
        if self._probing is not None and threads == self._probing and key == self._probe_key:
            self._probe_samples.append(seconds)
            if len(self._probe_samples) >= self.probe_steps:
                # A probe's figure replaces the old one, which may date from
                # before a neighbour came or went.
                self._costs[cell] = statistics.median(self._probe_samples)
                self._probing = None
                self._decide(key)
            return
        if threads != self.current:
            return
        old = self._costs.get(cell)
        self._costs[cell] = seconds if old is None else old + self.alpha * (seconds - old)
        confirmed = self._confirmed.setdefault(key, self._costs[cell])
        # Much slower than it was, on average (one slow step is noise): look
        # around now, a neighbour may have started.
        if self._costs[cell] > confirmed * self.slowdown:
            self._countdown = 1

    def wake(self, free_cores: float | None = None) -> None:
        """The engine was idle a while; ``free_cores``: what the neighbours left
        free meanwhile, if known (``neighbours.IdleWatch``).

        Fewer or more free cores than threads: start the next request on what
        is free, its prompt too (prompt chunks are never probes). A neighbour
        that came during the pause otherwise costs the first steps on too many
        threads, and one of them stalls now and then for a whole time slice
        behind the neighbour (110-340 ms against a 25 ms step, measured): the
        moving average notices late and a short probe rarely sees one. One that
        left costs the prompt and the first steps on too few. The reading may
        still be wrong (steal that has just ended, a neighbour asleep on I/O at
        the wrong moment): a step down is probed after a few steps, a step up
        as after any change.

        Without a reading, below all threads, probe at the next step: probes are
        counted in steps, and no step runs while idle, so a neighbour that
        left during a pause would be noticed only after up to
        ``probe_every_max`` steps on too few threads.
        """
        if self._probing is not None:
            return
        if free_cores is not None:
            fit = max(1, min(self.max_threads, int(free_cores + 0.5)))
            if fit != self.current:
                # Down: confirmed by a probe soon. Up: the reading has seen the
                # cores idle until now, so the usual probing after a change.
                down = fit < self.current
                self._switch(fit)
                self._countdown = self.probe_steps if down else self._interval
            elif self.current < self.max_threads:
                self._countdown = min(self._countdown, self.probe_steps)
            return
        if self.current < self.max_threads:
            self._countdown = 1

    def _decide(self, key: int) -> None:
        known = {t: cost for (k, t), cost in self._costs.items() if k == key}
        best = min(known, key=known.__getitem__)
        if self.current in known and known[best] > known[self.current] * (1 - self.margin):
            best = self.current  # not clearly faster: stay
        if best != self.current:
            self._switch(best)
        else:
            self._interval = min(self.probe_every_max, self._interval * 2)
            self._confirmed[key] = known[best]
        self._countdown = self._interval

    def _switch(self, threads: int) -> None:
        """A new choice: probed often again, its old confirmations void."""
        self.current = threads
        self.switches += 1
        self._interval = self.probe_every_min
        self._confirmed = {}

    def _neighbour(self) -> int:
        """Alternate between one thread fewer and one more, within 1..max_threads."""
        for _ in range(2):
            self._direction = -self._direction
            probe = self.current + self._direction
            if 1 <= probe <= self.max_threads:
                return probe
        return self.current


def choose_evictions(entries: Sequence[tuple[int, int, float]], capacity: int,
                     incoming: int) -> list[int]:
    """Keys to drop, least recently used first, so ``incoming`` bytes fit under ``capacity``.

    ``entries`` are ``(key, size_bytes, last_used)``. An incoming entry larger
    than the whole capacity evicts nothing (the caller refuses it).
    """
    if incoming > capacity:
        return []
    used = sum(size for _, size, _ in entries)
    drop: list[int] = []
    for key, size, _ in sorted(entries, key=lambda e: e[2]):
        if used + incoming <= capacity:
            break
        drop.append(key)
        used -= size
    return drop


def default_slots(cores: int) -> int:
    """CEREBRUM_SLOTS when unset: two sequences per core, between 2 and 4.

    Batched decode of a small model is bound by memory bandwidth, so a few
    parallel sequences cost little per token; past four on a small VPS each
    stream slows more than the batching gains. RAM may lower it further at
    load time (see ``slots_for_ram``).
    """
    return max(2, min(4, 2 * cores))


def slots_for_ram(wanted: int, kv_mb_per_slot: float, available_mb: float,
                  model_mb: float, floor_mb: float) -> int:
    """How many of ``wanted`` slots' KV caches fit above the RAM floor (at least one)."""
    room = available_mb - model_mb - floor_mb
    if kv_mb_per_slot <= 0 or room == float("inf"):
        return wanted
    return max(1, min(wanted, int(room // kv_mb_per_slot)))
