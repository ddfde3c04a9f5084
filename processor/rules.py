"""The alert rules file: defaults plus per-coin overrides, validated at start-up with line numbers.

A typo in a rules file must stop the processor with ``rules.yaml:14: coins.bitcoin.rules.drop.
threshold_pct: Input should be greater than 0 (got -3)``, not silently disable an alert. YAML is
composed into nodes first so every validation error can point at the line it came from.

Example (docs: README "Alert rules")::

    defaults:
      windows: [5m, 15m, 1h, 4h, 24h]
      candle_interval: 1m
      cooldown: 15m
      rules:
        drop: {threshold_pct: 5}
        spike: {threshold_pct: 5}
        volatility: {z_threshold: 4, baseline: 60, min_samples: 20}
        crossover: {fast: 9, slow: 21, average: ema}
        rsi: {period: 14, oversold: 30, overbought: 70}
    coins:
      bitcoin:
        rules:
          drop: {threshold_pct: 3, windows: [15m]}
      dogecoin:
        rules:
          crossover: null        # disabled for this coin
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crypto_watcher.config import Percent, ProcessorSettings, WindowList, default_of
from crypto_watcher.durations import Duration, DurationOrZero, parse_duration_ms


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MoveSettings(_Strict):
    threshold_pct: Percent = 5.0
    windows: list[str] | None = None
    """Limit the rule to some of the configured windows (default: all)."""
    cooldown: Duration | None = None
    rearm_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.5


class VolatilitySettings(_Strict):
    """A candle return this many standard deviations from the recent returns' mean."""

    z_threshold: Annotated[float, Field(gt=0)] = 4.0
    baseline: Annotated[int, Field(ge=5, le=10_000)] = 60
    min_samples: Annotated[int, Field(ge=3)] = 20
    cooldown: Duration | None = None


class CrossoverSettings(_Strict):
    """Buy hint when the fast average of candle closes crosses above the slow one, sell below."""

    fast: Annotated[int, Field(ge=1, le=1000)] = 9
    slow: Annotated[int, Field(ge=2, le=1000)] = 21
    average: Literal["sma", "ema"] = "ema"
    min_gap_pct: Annotated[float, Field(ge=0, lt=50)] = 0.2
    """A cross counts once the averages are this far apart (in %): noise around zero is no signal."""

    @model_validator(mode="after")
    def _fast_below_slow(self) -> CrossoverSettings:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be shorter than slow ({self.slow})")
        return self


class RsiSettings(_Strict):
    """Buy hint when RSI falls below ``oversold``, sell hint above ``overbought`` (re-arms at the midline)."""

    period: Annotated[int, Field(ge=2, le=500)] = 14
    oversold: Annotated[float, Field(gt=0, lt=50)] = 30.0
    overbought: Annotated[float, Field(gt=50, lt=100)] = 70.0


class RuleConfig(_Strict):
    drop: MoveSettings | None = MoveSettings(threshold_pct=default_of(ProcessorSettings, "drop_pct"))
    spike: MoveSettings | None = MoveSettings(threshold_pct=default_of(ProcessorSettings, "spike_pct"))
    volatility: VolatilitySettings | None = VolatilitySettings()
    crossover: CrossoverSettings | None = CrossoverSettings()
    rsi: RsiSettings | None = RsiSettings()


class Defaults(_Strict):
    """What every coin gets; each default is the processor setting of the same name (CW_WINDOWS, ...)."""

    windows: WindowList = Field(default_factory=lambda: default_of(ProcessorSettings, "windows"))
    candle_interval: Duration = default_of(ProcessorSettings, "candle_interval")
    grace: DurationOrZero = default_of(ProcessorSettings, "grace")
    cooldown: Duration = default_of(ProcessorSettings, "cooldown")
    rules: RuleConfig = RuleConfig()


class CoinOverride(_Strict):
    cooldown: Duration | None = None
    rules: dict[str, Any] = Field(default_factory=dict)


class RulesFile(_Strict):
    defaults: Defaults = Defaults()
    coins: dict[str, CoinOverride] = Field(default_factory=dict)


class RulesError(ValueError):
    """Invalid rules file; the message lists ``file:line: field: problem`` for each error."""


class RuleSet:
    """Rules resolved per coin: the defaults with that coin's overrides merged in, field by field."""

    def __init__(self, spec: RulesFile, source: str = "<defaults>") -> None:
        self.spec = spec
        self.source = source
        self.window_ms = [parse_duration_ms(w) for w in spec.defaults.windows]
        self._resolved: dict[str, RuleConfig] = {}
        for coin in spec.coins:
            self.for_coin(coin)  # validate every override now, not at the coin's first tick

    @property
    def windows(self) -> list[str]:
        return self.spec.defaults.windows

    @property
    def candle_interval(self) -> int:
        return self.spec.defaults.candle_interval

    @property
    def grace(self) -> int:
        return self.spec.defaults.grace

    def cooldown(self, coin: str, rule_cooldown: int | None) -> int:
        override = self.spec.coins.get(coin)
        if rule_cooldown is not None:
            return rule_cooldown
        if override is not None and override.cooldown is not None:
            return override.cooldown
        return self.spec.defaults.cooldown

    def for_coin(self, coin: str) -> RuleConfig:
        cached = self._resolved.get(coin)
        if cached is not None:
            return cached
        base = self.spec.defaults.rules
        override = self.spec.coins.get(coin)
        if override is None or not override.rules:
            resolved = base
        else:
            merged: dict[str, Any] = {}
            for name in RuleConfig.model_fields:
                current = getattr(base, name)
                if name not in override.rules:
                    merged[name] = current
                elif override.rules[name] is None:
                    merged[name] = None
                else:
                    start = current.model_dump() if current is not None else {}
                    merged[name] = {**start, **override.rules[name]}
            unknown = set(override.rules) - set(RuleConfig.model_fields)
            if unknown:
                merged.update({k: override.rules[k] for k in unknown})
            try:
                resolved = RuleConfig.model_validate(merged)
            except ValidationError as exc:
                raise RulesError(_format(exc, self.source, ("coins", coin, "rules"), None)) from None
        self._resolved[coin] = resolved
        return resolved

    @classmethod
    def defaults(cls, **overrides: Any) -> RuleSet:
        return cls(RulesFile.model_validate({"defaults": overrides}))

    @classmethod
    def from_settings(cls, settings: ProcessorSettings) -> RuleSet:
        """The rules when no rules file is configured: the CW_* settings of the same names."""
        drop = MoveSettings(threshold_pct=settings.drop_pct)
        spike = MoveSettings(threshold_pct=settings.spike_pct)
        defaults = Defaults(
            windows=settings.windows,
            candle_interval=settings.candle_interval,
            grace=settings.grace,
            cooldown=settings.cooldown,
            rules=RuleConfig(drop=drop, spike=spike),
        )
        return cls(RulesFile(defaults=defaults))


def _line_of(node: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``path`` (or of its closest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(part)), None)
            if match is None:
                key = next((k for k, _v in node.value if k.value == str(part)), None)
                return key.start_mark.line + 1 if key is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _format(exc: ValidationError, source: str, prefix: tuple[Any, ...], root: yaml.Node | None) -> str:
    lines = []
    for err in exc.errors():
        path = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        field = ".".join(str(p) for p in path) or "(file)"
        line = _line_of(root, path) if root is not None else None
        where = f"{source}:{line}" if line else source
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) or err["type"] == "missing" else f" (got {got!r})"
        lines.append(f"{where}: {field}: {err['msg']}{shown}")
    return "invalid rules file:\n  " + "\n  ".join(lines)


def load_rules(path: str | Path) -> RuleSet:
    """Parse and validate a rules file; raises RulesError naming file, line and field."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise RulesError(f"cannot read rules file {source}: {exc.strerror}") from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise RulesError(f"invalid rules file:\n  {where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RulesError(f"invalid rules file:\n  {source}:1: the file must be a mapping with 'defaults' and 'coins'")
    try:
        spec = RulesFile.model_validate(data)
    except ValidationError as exc:
        raise RulesError(_format(exc, source, (), root)) from None
    try:
        return RuleSet(spec, source)
    except RulesError as exc:
        # Re-anchor override errors (validated after merging) on the file's lines.
        raise RulesError(_reanchor(str(exc), source, root)) from None


def _reanchor(message: str, source: str, root: yaml.Node | None) -> str:
    out = []
    for line in message.splitlines():
        stripped = line.strip()
        if stripped.startswith(f"{source}: "):
            field = stripped[len(source) + 2 :].split(":", 1)[0]
            parts = tuple(int(p) if p.isdigit() else p for p in field.split("."))
            number = _line_of(root, parts)
            line = line.replace(f"{source}: ", f"{source}:{number}: ", 1) if number else line
        out.append(line)
    return "\n".join(out)
