"""The only door to Bitrix24: fast-bitrix24 in its safe subset behind typed, intent-named calls."""
