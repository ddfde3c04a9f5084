"""A tick file with good and bad lines of every kind, for the replay-file tests."""

from __future__ import annotations

from tests.support.producer import T0

MS = T0 * 1000


CSV = f"""coin,vs,price,event_time,market_cap,symbol
bitcoin,usd,50000.5,{MS},1e12,btc
ethereum,usd,3000,2026-01-01T00:00:10Z,,
bitcoin,usd,-5,{MS + 20_000},,
bitcoin,usd,50010,{T0 + 30},,
solana,usd,150,2026-13-01,,
bitcoin,usd,50020,{MS + 40_000},1,btc,extra
bitcoin,usd,,{MS + 50_000},,

ethereum,usd,3001,2026-01-01T00:01:00+00:00,,
"""
