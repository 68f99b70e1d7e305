"""Client companies (furniture makers) and their contacts; client cards and NPS answers."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

from b24emu.datasets.demo_common import (
    ANCHOR,
    ANCHOR_MONTH,
    Client,
    World,
    add_workdays,
    at,
    midnight,
    month_of,
    shift_workday,
    work_time,
)
from b24emu.datasets.names import (
    BRANDS,
    CITIES,
    COMPANY_KINDS,
    COMPETITORS,
    CONTACT_POSTS,
    NEEDS,
    STREETS,
    Person,
    person,
    translit,
)

CLIENTS = 400
# Segment, share of a rep's clients. Regular clients buy most months, occasional ones a few
# times a year, churned ones stopped, new ones started inside the history, prospects never bought.
SEGMENTS = (("regular", 0.24), ("occasional", 0.36), ("churned", 0.11), ("new25", 0.06),
            ("new26", 0.13), ("prospect", 0.10))
_EPOCH = date(2019, 4, 1)
_HISTORY_START = date(2024, 8, 20)
# NPS survey waves (twice a year): the April and the October one before the anchor.
NPS_WAVES = ((date(2026, 4, 6), date(2026, 4, 24)), (date(2026, 10, 5), date(2026, 10, 23)))
_NPS_WEIGHTS = (1, 1, 1, 1, 2, 2, 4, 7, 14, 30, 37)


def _random_day(rng: random.Random, lo: date, hi: date) -> date:
    return shift_workday(lo + timedelta(days=rng.randrange(max(1, (hi - lo).days))))


def _phone(rng: random.Random, city: str, mobile: bool) -> str:
    if mobile:
        code = rng.choice(("913", "923", "953", "983", "903", "960"))
        n = rng.randrange(10**7)
        return f"+7 ({code}) {n // 10**4:03d}-{n // 100 % 100:02d}-{n % 100:02d}"
    code = CITIES[city][0]
    digits = 10 - len(code)
    n = rng.randrange(2 * 10 ** (digits - 1), 10**digits)
    text = str(n)
    body = f"{text[:-4]}-{text[-4:-2]}-{text[-2:]}"
    return f"+7 ({code}) {body}"


def _segment(rng: random.Random, churn_bias: float) -> str:
    weights = [share for _, share in SEGMENTS]
    weights[0] -= churn_bias
    weights[2] += churn_bias
    return rng.choices([name for name, _ in SEGMENTS], weights)[0]


def _rate(rng: random.Random, segment: str) -> float:
    if segment == "regular":
        return rng.uniform(0.7, 0.9)
    if segment == "occasional":
        return rng.uniform(0.15, 0.35)
    if segment == "churned":
        return rng.uniform(0.4, 0.75)
    if segment == "new25":
        return rng.uniform(0.35, 0.7)
    if segment == "new26":
        return rng.uniform(0.5, 0.8) if rng.random() < 0.7 else rng.uniform(0.1, 0.2)
    return 0.0


def _title(rng: random.Random, pattern: str, city: str,
           titles: set[str]) -> tuple[str, str, Person | None]:
    """A unique company name from a pattern: (title, brand, owner for an ИП)."""
    owner: Person | None = None
    brand = title = ""
    for _attempt in range(30):
        brand = rng.choice(BRANDS)
        if "{ip}" in pattern:
            owner = person(rng)
            title = pattern.format(ip=owner.initials)
        else:
            title = pattern.format(brand=brand)
        if title not in titles:
            break
    else:
        title = f"{title} ({city})"
    titles.add(title)
    return title, brand, owner


def _created(rng: random.Random, client: Client) -> datetime:
    """When the company appeared in CRM: before its first purchase, or long ago."""
    if client.segment in ("new25", "new26"):
        y, m = month_of(client.first)
        day = _random_day(rng, date(y, m, 1) - timedelta(days=60),
                          date(y, m, 1) - timedelta(days=15))
    elif client.segment == "prospect":
        day = _random_day(rng, date(2024, 3, 1), ANCHOR.date() - timedelta(days=20))
    else:
        day = _random_day(rng, _EPOCH, _HISTORY_START)
    return work_time(rng, day)


def plan_clients(w: World) -> list[tuple[Client, Person | None, str]]:
    """Decide every client: rep, name, segment, size, dates; returns (client, owner, domain)."""
    rng = w.rng
    titles: set[str] = set()
    kinds = [k[2] for k in COMPANY_KINDS]
    rep_weights = [1.15, 1.1, 1.05, 0.9, 0.95, 0.85]
    out: list[tuple[Client, Person | None, str]] = []
    for _ in range(CLIENTS):
        rep = rng.choices(w.reps, rep_weights)[0]
        city = rng.choice(rep.cities)
        kind = rng.choices(range(len(COMPANY_KINDS)), kinds)[0]
        pattern, base, _share = COMPANY_KINDS[kind]
        title, brand, owner = _title(rng, pattern, city, titles)
        if owner is not None:
            domain = rng.choice(("mail.ru", "yandex.ru", "gmail.com", "bk.ru"))
        else:
            domain = f"{translit(brand)}{rng.choice(('', '-mebel', 'nsk', '-sib', '54'))}.ru"
        segment = _segment(rng, 0.06 if rep.nps_shift < 0 else 0.0)
        client = Client(rep=rep.user_id, title=title, city=city, kind=kind,
                        size=base * rng.lognormvariate(0, 0.45), segment=segment,
                        created=ANCHOR, rate=_rate(rng, segment))
        if segment == "new25":
            client.first = rng.randrange(5, 15)
        elif segment == "new26":
            client.first = rng.randrange(16, ANCHOR_MONTH)
        if segment == "churned":
            client.churn = rng.randrange(6, 23)
        client.created = _created(rng, client)
        out.append((client, owner, domain))
    out.sort(key=lambda item: item[0].created)
    return out


def _card(rng: random.Random, client: Client) -> dict[str, Any]:
    """Client-card fields: most fresh (this quarter), some stale, a few never filled."""
    roll = rng.random()
    if roll < 0.08:
        return {"UF_CRM_CARD_NEEDS": None, "UF_CRM_CARD_COMPETITORS": None,
                "UF_CRM_CARD_POTENTIAL": None, "UF_CRM_CARD_BUDGET": None,
                "UF_CRM_CARD_UPDATED": None}
    yearly = client.size * 12 * max(client.rate, 0.3)
    budget = round(yearly / rng.uniform(0.2, 0.85), -4)
    stale = client.segment == "churned" or roll > 0.78
    age = rng.randrange(95, 420) if stale else rng.randrange(1, 88)
    updated = shift_workday(ANCHOR.date() - timedelta(days=age), -1)
    updated = max(updated, client.created.date())
    return {
        "UF_CRM_CARD_NEEDS": ", ".join(rng.sample(NEEDS, rng.randint(2, 4))),
        "UF_CRM_CARD_COMPETITORS": ", ".join(rng.sample(COMPETITORS, rng.randint(1, 3))),
        "UF_CRM_CARD_POTENTIAL": float(round(budget * rng.uniform(0.5, 0.9), -4)),
        "UF_CRM_CARD_BUDGET": float(budget),
        "UF_CRM_CARD_UPDATED": at(updated, 0),
    }


def build_companies(w: World) -> None:
    """Insert companies (in creation order) and 1-3 contacts each."""
    rng = w.rng
    p = w.portal
    planned = plan_clients(w)
    contacts: list[tuple[datetime, dict[str, Any], Client]] = []
    for client, owner, domain in planned:
        card = _card(rng, client)
        modified = client.created
        if card["UF_CRM_CARD_UPDATED"] is not None:
            modified = max(modified, work_time(rng, card["UF_CRM_CARD_UPDATED"].date()))
        client.phone = _phone(rng, client.city, owner is not None)
        if owner is not None:
            client.email = f"{translit(owner.last_name)}.{translit(owner.name)[:1]}@{domain}"
        else:
            client.email = f"{rng.choice(('info', 'zakaz', 'office', 'snab'))}@{domain}"
        factory = client.kind == 0
        row: dict[str, Any] = {
            "TITLE": client.title, "COMPANY_TYPE": "CUSTOMER", "LOGO": None,
            "ADDRESS": f"{rng.choice(STREETS)}, {rng.randint(1, 180)}",
            "ADDRESS_CITY": client.city, "ADDRESS_REGION": None,
            "ADDRESS_PROVINCE": CITIES[client.city][1], "ADDRESS_COUNTRY": "Россия",
            "INDUSTRY": "MANUFACTURING", "EMPLOYEES": "EMPLOYEES_2" if factory else "EMPLOYEES_1",
            "CURRENCY_ID": "RUB", "REVENUE": float(round(client.size * 12 * rng.uniform(6, 12),
                                                         -5)),
            "OPENED": "Y", "COMMENTS": "", "HAS_PHONE": "Y", "HAS_EMAIL": "Y",
            "IS_MY_COMPANY": "N", "ASSIGNED_BY_ID": client.rep, "CREATED_BY_ID": client.rep,
            "MODIFY_BY_ID": client.rep, "DATE_CREATE": client.created, "DATE_MODIFY": modified,
            "LEAD_ID": None, "ORIGINATOR_ID": None, "ORIGIN_ID": None,
            "PHONE": [w.multifield("PHONE", client.phone)],
            "EMAIL": [w.multifield("EMAIL", client.email)],
            "WEB": [w.multifield("WEB", domain)] if owner is None and rng.random() < 0.6 else [],
            "LAST_ACTIVITY_TIME": None, "LAST_ACTIVITY_BY": None, **card,
        }
        client.company_id = p.companies.insert(row)
        w.clients.append(client)
        count = 1 if owner is not None else rng.choice((1, 2, 2, 3) if factory else (1, 1, 2))
        for i in range(count):
            who = owner if (i == 0 and owner is not None) else person(rng)
            post = "Индивидуальный предприниматель" if who is owner else (
                "Директор" if i == 0 else rng.choice(CONTACT_POSTS[1:]))
            if i == 0:
                created = client.created + timedelta(minutes=rng.randint(2, 30))
            else:
                day = add_workdays(client.created.date(), rng.randint(20, 500))
                if day >= ANCHOR.date() - timedelta(days=7):
                    continue
                created = work_time(rng, day)
            contacts.append((created, _contact(w, client, who, post, created), client))
    contacts.sort(key=lambda item: item[0])
    for _created, row, client in contacts:
        client.contacts.append(p.contacts.insert(row))


def _contact(w: World, client: Client, who: Person, post: str,
             created: datetime) -> dict[str, Any]:
    rng = w.rng
    phones = [w.multifield("PHONE", _phone(rng, client.city, True))]
    emails = []
    if rng.random() < 0.7:
        box = client.email.split("@", 1)[1]
        emails.append(w.multifield("EMAIL", f"{translit(who.name)}.{translit(who.last_name)}@"
                                            f"{box}"))
    return {
        "HONORIFIC": None, "NAME": who.name, "SECOND_NAME": who.second_name,
        "LAST_NAME": who.last_name, "PHOTO": None, "BIRTHDATE": None, "TYPE_ID": "CLIENT",
        "SOURCE_ID": "SELF", "SOURCE_DESCRIPTION": None, "POST": post, "COMMENTS": "",
        "OPENED": "Y", "EXPORT": "Y", "HAS_PHONE": "Y", "HAS_EMAIL": "Y" if emails else "N",
        "ASSIGNED_BY_ID": client.rep, "CREATED_BY_ID": client.rep, "MODIFY_BY_ID": client.rep,
        "DATE_CREATE": created, "DATE_MODIFY": created, "COMPANY_ID": client.company_id,
        "COMPANY_IDS": [client.company_id], "LEAD_ID": None, "ORIGINATOR_ID": None,
        "ORIGIN_ID": None, "PHONE": phones, "EMAIL": emails, "UF_CRM_NPS_SCORE": None,
        "UF_CRM_NPS_DATE": None, "LAST_ACTIVITY_TIME": None, "LAST_ACTIVITY_BY": None,
    }


def add_nps(w: World) -> None:
    """NPS answers of active clients' contacts in the last two survey waves."""
    rng = w.rng
    for client in w.clients:
        active = [m for m in client.won if m >= ANCHOR_MONTH - 12]
        if not active:
            continue
        shift = w.rep(client.rep).nps_shift
        for i, contact_id in enumerate(client.contacts):
            row = w.portal.contacts.rows[contact_id]
            roll = rng.random()
            chance = 0.75 if i == 0 else 0.3
            if roll < chance:
                lo, hi = NPS_WAVES[1]
            elif roll < chance + 0.5 * (1 - chance):
                lo, hi = NPS_WAVES[0]
            else:
                continue
            day = _random_day(rng, lo, hi)
            answered = work_time(rng, day)
            if answered <= row["DATE_CREATE"]:
                continue
            score = rng.choices(range(11), _NPS_WEIGHTS)[0]
            if shift and rng.random() < 0.4:
                score += shift if shift < 0 else (shift if score < 9 else 0)
            if client.churn is not None:
                score -= rng.randint(0, 4)
            row["UF_CRM_NPS_SCORE"] = max(0, min(10, score))
            row["UF_CRM_NPS_DATE"] = midnight(answered)
            row["DATE_MODIFY"] = max(row["DATE_MODIFY"], answered)

