"""Real local servers the tests talk to: CoinGecko look-alike, InfluxDB v2 write contract, service runners."""
