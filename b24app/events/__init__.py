"""Event intake: parse and verify Bitrix24 event POSTs, persist them in the inbox."""
