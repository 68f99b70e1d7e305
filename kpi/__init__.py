"""Pure domain: working calendar, SLA arithmetic, task-format rules, KPI formulas."""
