"""`agora seed`: realistic, linked, deterministic demo data, loaded fast.

Shape of the data (all of it derived from `--seed` through `random.Random`, timestamps
included, so the same seed gives the same rows on any database):

* users with unique emails and usernames, one profile each, and the same password,
  `DEMO_PASSWORD`, hashed ONCE (Argon2id with the service's parameters and a salt derived
  from the seed): hashing per user would take hours for a million users;
* products sold by users, with categories, prices and stock;
* orders of 1-4 distinct products from other users, with price snapshots and totals equal to
  the sum of their lines; `paid` (the buyer could afford it, one `order_payment` row per
  seller, like `pay_order`), `cancelled` (while pending: no ledger rows) or `pending`;
* the credit ledger: a `grant` per user first, then order payments, then member `transfer`s
  that never overdraw. Every user's `credits` is the replay of the ledger; nothing goes
  negative at any point of it.

Memory: rows are generated in batches and streamed; what is kept is a few compact integer
arrays (a balance per user; seller, price and name per product), not rows. Because
`user.credits` is written first but depends on the orders, a planning pass runs the orders
and transfers generators once to compute the balances, then the load pass runs them again
with the same random streams (same rows, same decisions).

Loading: PostgreSQL through COPY on the driver connection (asyncpg
`copy_records_to_table`), one COPY per table fed by its generator so that PostgreSQL ingests
one chunk while Python generates the next; SQLite through `executemany` batches on the driver
connection. The whole run is ONE transaction, so a failed seed leaves nothing behind. Ids are
set explicitly, after each table's current max(id): seeding an existing database appends
(seeded users only trade among themselves, so existing balances are untouched; emails and
usernames carry the new id, so they stay unique). On PostgreSQL the id sequences are moved
past the new rows afterwards.

Each table has one row generator, registered in `LOADERS` in foreign-key order (forum: 60
tags per run, posts by seeded users with 0-3 tags each). The order stream is replayed by the
`order`, `order_item` and `credit_transfer` loaders (and the planning pass) rather than kept
in memory.
"""

from __future__ import annotations

import hashlib
import random
from array import array
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import argon2.low_level
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agora.models import (
    CreditTransfer,
    Order,
    OrderItem,
    Post,
    Product,
    Tag,
    User,
    UserProfile,
    post_tag,
)

DEMO_PASSWORD = "agora-demo-password"  # noqa: S105 - documented: every seeded user has it
DEFAULT_SEED = 42
DEFAULT_BATCH_SIZE = 10_000

Row = tuple[Any, ...]
Batch = list[Row]

_MODELS = (User, UserProfile, Product, Order, OrderItem, CreditTransfer, Tag, Post)
TABLES: dict[str, Table] = {
    **{m.__tablename__: m.__table__ for m in _MODELS},  # type: ignore[misc]
    "post_tag": post_tag,
}
# Tables keyed by an `id` column: their ids continue after the largest one and their
# sequences are moved past the rows written (post_tag has a composite key of two FKs).
ID_TABLES = tuple(name for name, table in TABLES.items() if "id" in table.c)
COLUMNS: dict[str, tuple[str, ...]] = {
    "user": (
        "id", "email", "username", "full_name", "hashed_password", "status", "is_superuser",
        "credits", "created_at", "updated_at", "deleted_at",
    ),
    "user_profile": ("id", "user_id", "bio", "avatar_url", "location", "created_at", "updated_at"),
    "product": (
        "id", "seller_id", "name", "description", "category", "price", "stock", "is_active",
        "created_at", "updated_at", "deleted_at", "version",
    ),
    "order": (
        "id", "buyer_id", "status", "total", "paid_at", "cancelled_at", "created_at",
        "updated_at",
    ),
    "order_item": ("id", "order_id", "product_id", "seller_id", "name", "unit_price", "quantity"),
    "tag": ("id", "name"),
    "post": (
        "id", "title", "slug", "content", "is_published", "published_at", "author_id",
        "created_at", "updated_at", "deleted_at", "version",
    ),
    "post_tag": ("post_id", "tag_id"),
    "credit_transfer": (
        "id", "kind", "from_user_id", "to_user_id", "amount", "note", "order_id", "created_at",
    ),
}  # fmt: skip

FIRST = [
    "ada",
    "alan",
    "anna",
    "ben",
    "carla",
    "chen",
    "dana",
    "eli",
    "emma",
    "farid",
    "grace",
    "hana",
    "ivan",
    "jonas",
    "kai",
    "lara",
    "leo",
    "lina",
    "maya",
    "mehdi",
    "nora",
    "omar",
    "paula",
    "quinn",
    "rosa",
    "sam",
    "sara",
    "tariq",
    "uma",
    "victor",
    "wen",
    "xavier",
    "yara",
    "zoe",
]
LAST = [
    "abe",
    "baker",
    "costa",
    "diaz",
    "evans",
    "fischer",
    "garcia",
    "haddad",
    "ito",
    "jensen",
    "kim",
    "lopez",
    "moreau",
    "nowak",
    "okafor",
    "patel",
    "quist",
    "rossi",
    "silva",
    "tanaka",
    "ueda",
    "varga",
    "weber",
    "xu",
    "yilmaz",
    "zhang",
]
CITIES = [
    "Lisbon",
    "Lagos",
    "Lyon",
    "Osaka",
    "Quito",
    "Oslo",
    "Pune",
    "Porto",
    "Seoul",
    "Tunis",
    "Turin",
    "Denver",
]
ADJECTIVES = [
    "Vintage",
    "Handmade",
    "Compact",
    "Sturdy",
    "Organic",
    "Classic",
    "Modern",
    "Rustic",
    "Tiny",
    "Deluxe",
]
# noun -> category: names and categories agree.
NOUNS = {
    "Lamp": "home", "Chair": "home", "Mug": "kitchen", "Kettle": "kitchen", "Novel": "books",
    "Atlas": "books", "Jacket": "clothing", "Scarf": "clothing", "Bicycle": "sports",
    "Racket": "sports", "Camera": "electronics", "Radio": "electronics", "Puzzle": "toys",
    "Kite": "toys", "Guitar": "music", "Drum": "music",
}  # fmt: skip
NOUN_LIST = tuple(NOUNS)
BIOS = ("Collector of odd things.", "Weekend maker.", "Buying and selling since 2019.", None)


@dataclass(frozen=True)
class SeedPlan:
    users: int = 0
    products: int = 0
    orders: int = 0
    posts: int = 0
    seed: int = DEFAULT_SEED
    batch_size: int = DEFAULT_BATCH_SIZE

    @property
    def transfers(self) -> int:
        """Member-to-member transfers: one per user on average (no flag of its own)."""
        return self.users

    def problems(self) -> list[str]:
        found = [f"--{n} must be >= 0" for n in ("users", "products", "orders", "posts")
                 if getattr(self, n) < 0]  # fmt: skip
        if self.batch_size < 1:
            found.append("--batch-size must be >= 1")
        if self.products and not self.users:
            found.append("--products needs --users (sellers are users)")
        if self.posts and not self.users:
            found.append("--posts needs --users (authors are users)")
        if self.orders and (self.users < 2 or not self.products):
            found.append("--orders needs --products and at least 2 users (buyer != seller)")
        return found


def demo_password_hash(seed: int, *, memory_kib: int, time_cost: int, parallelism: int) -> str:
    """Argon2id of `DEMO_PASSWORD` with a salt derived from the seed: deterministic, and
    verifiable by the service (same encoded format and parameters as pwdlib's hasher)."""
    salt = hashlib.sha256(f"agora-seed:{seed}".encode()).digest()[:16]
    encoded = argon2.low_level.hash_secret(
        DEMO_PASSWORD.encode(),
        salt,
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=parallelism,
        hash_len=32,
        type=argon2.low_level.Type.ID,
    )
    return encoded.decode()


@dataclass
class Context:
    """What the loaders share: the plan, the first free id per table, the epoch, and the
    compact per-entity arrays filled by the planning pass."""

    plan: SeedPlan
    start: dict[str, int]  # first id to use, per table
    password_hash: str
    epoch: datetime
    grants: array[int] = field(default_factory=lambda: array("q"))  # opening, per user
    balances: array[int] = field(default_factory=lambda: array("q"))  # final, per user
    sellers: array[int] = field(default_factory=lambda: array("l"))  # per product (user index)
    prices: array[int] = field(default_factory=lambda: array("q"))
    names: array[int] = field(default_factory=lambda: array("l"))  # adjective*nouns + noun
    counts: dict[str, int] = field(default_factory=dict)  # exact rows per table (planning)

    def rng(self, stream: str) -> random.Random:
        return random.Random(f"{self.plan.seed}:{stream}")

    def user_id(self, index: int) -> int:
        return self.start["user"] + index

    def at(self, day: float) -> datetime:
        # `timedelta(day)`: days are its first argument; a keyword costs twice the call.
        return self.epoch + timedelta(day)


def epoch_for(seed: int) -> datetime:
    """Timestamps are fixed by the seed (never now()): a day in 2025."""
    return datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=seed % 365)


PRODUCT_NAMES = tuple(f"{a} {n}" for a in ADJECTIVES for n in NOUN_LIST)


def _product_name(key: int) -> str:
    return PRODUCT_NAMES[key]


def _batches(rows: Iterator[Row], size: int) -> Iterator[Batch]:
    batch: Batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- loaders: one row generator per table ---------------------------------------------------


def _users(ctx: Context) -> Iterator[Row]:
    rng, n = ctx.rng("users"), ctx.plan.users
    statuses = ("active",) * 96 + ("inactive",) * 3 + ("suspended",)
    for i in range(n):
        uid, first, last = ctx.user_id(i), rng.choice(FIRST), rng.choice(LAST)
        created = ctx.at(30 * i / n)
        yield (
            uid, f"{first}.{last}.{uid}@example.com", f"{first}_{uid}",
            f"{first.title()} {last.title()}", ctx.password_hash, rng.choice(statuses),
            False, ctx.balances[i], created, created, None,
        )  # fmt: skip


def _profiles(ctx: Context) -> Iterator[Row]:
    rng, n, first = ctx.rng("profiles"), ctx.plan.users, ctx.start["user_profile"]
    for i in range(n):
        uid, created = ctx.user_id(i), ctx.at(30 * i / n)
        avatar = f"https://avatars.example.com/{uid}.png" if rng.random() < 0.7 else None
        yield (first + i, uid, rng.choice(BIOS), avatar, rng.choice(CITIES), created, created)


def plan_catalog(ctx: Context) -> None:
    """Sellers, prices and names of the products (used by the orders): ~10% of users sell."""
    rng, users = ctx.rng("catalog"), ctx.plan.users
    sellers = max(1, users // 10)
    for _ in range(ctx.plan.products):
        ctx.sellers.append(rng.randrange(sellers) * (users // sellers))
        ctx.prices.append(rng.choice((99, 499, 1250, 1999, 4500, 9900)) + rng.randrange(100))
        ctx.names.append(rng.randrange(len(ADJECTIVES) * len(NOUN_LIST)))


def _products(ctx: Context) -> Iterator[Row]:
    rng, n, first = ctx.rng("products"), ctx.plan.products, ctx.start["product"]
    for i in range(n):
        name, created = _product_name(ctx.names[i]), ctx.at(30 + 30 * i / n)
        noun = NOUN_LIST[ctx.names[i] % len(NOUN_LIST)]
        yield (
            first + i, ctx.user_id(ctx.sellers[i]), name,
            f"{name}, {rng.choice(('like new', 'used', 'new'))}.", NOUNS[noun],
            ctx.prices[i], rng.randrange(0, 200), rng.random() < 0.95, created, created,
            None, 1,
        )  # fmt: skip


@dataclass
class _Order:
    row: Row  # () unless asked for
    items: list[Row]  # [] unless asked for
    payments: list[Row]  # [] unless asked for
    n_items: int
    n_payments: int


def _market_orders(
    ctx: Context,
    balances: array[int],
    *,
    rows: bool = False,
    items: bool = False,
    payments: bool = False,
) -> Iterator[_Order]:
    """Orders with their items and payments. `balances` holds the grants on entry and is
    updated by every payment. The same stream is replayed by the planning pass and by the
    order, order_item and credit_transfer loaders: same random stream, same decisions. Each
    pass asks only for the rows it writes (`rows`: the order's, `items`, `payments`); the
    others come out empty, and `n_items` and `n_payments` count them either way."""
    rng, plan = ctx.rng("orders"), ctx.plan
    item_id = ctx.start["order_item"]
    transfer_id = ctx.start["credit_transfer"] + plan.users  # after the grants
    sellers, prices, user_id = ctx.sellers, ctx.prices, ctx.user_id
    for i in range(plan.orders):
        order_id = ctx.start["order"] + i
        buyer, chosen = _basket(ctx, rng)
        per_seller: dict[int, int] = {}
        for p, qty in chosen.items():
            seller = sellers[p]
            per_seller[seller] = per_seller.get(seller, 0) + prices[p] * qty
        order_items: list[Row] = []
        if items:
            start = ctx.start["product"]
            order_items = [
                (item_id + k, order_id, start + p, user_id(sellers[p]),
                 _product_name(ctx.names[p]), prices[p], qty)
                for k, (p, qty) in enumerate(chosen.items())
            ]  # fmt: skip
        item_id += len(chosen)
        total, roll = sum(per_seller.values()), rng.random()
        paid = roll < 0.6 and balances[buyer] >= total
        n_payments = len(per_seller) if paid else 0  # one per seller
        order_payments: list[Row] = []
        if paid:
            balances[buyer] -= total
            for seller, amount in per_seller.items():
                balances[seller] += amount
        if not (rows or (payments and paid)):  # nothing dated to write
            transfer_id += n_payments
            yield _Order((), order_items, order_payments, len(chosen), n_payments)
            continue
        created = ctx.at(60 + 30 * i / plan.orders)
        paid_at = cancelled_at = None
        if paid:
            status, paid_at = "paid", created + timedelta(minutes=5)
            for seller, amount in sorted(per_seller.items()):
                if payments:
                    order_payments.append(
                        (transfer_id, "order_payment", user_id(buyer), user_id(seller),
                         amount, f"order {order_id}", order_id, paid_at)
                    )  # fmt: skip
                transfer_id += 1
        elif roll < 0.75:
            status, cancelled_at = "cancelled", created + timedelta(hours=1)
        else:
            status = "pending"
        row: Row = ()
        if rows:
            updated = paid_at or cancelled_at or created
            row = (order_id, user_id(buyer), status, total, paid_at, cancelled_at, created, updated)
        yield _Order(row, order_items, order_payments, len(chosen), n_payments)


def _basket(ctx: Context, rng: random.Random) -> tuple[int, dict[int, int]]:
    """A buyer and 1-4 distinct products (index -> quantity) that others sell."""
    # int(random() * n) rather than randrange: this is the hot loop, and it is as
    # deterministic (and uniform enough for demo data).
    rand, users, products, sellers = rng.random, ctx.plan.users, ctx.plan.products, ctx.sellers
    while True:  # ends: with 2+ users, some buyer is not the only seller
        buyer = int(rand() * users)
        chosen: dict[int, int] = {}
        for _ in range(1 + int(rand() * 4)):
            p = int(rand() * products)
            if sellers[p] != buyer:
                chosen[p] = 1 + int(rand() * 3)
        if chosen:
            return buyer, chosen


def _orders(ctx: Context) -> Iterator[Row]:
    for order in _market_orders(ctx, _initial_balances(ctx), rows=True):
        yield order.row


def _order_items(ctx: Context) -> Iterator[Row]:
    for order in _market_orders(ctx, _initial_balances(ctx), items=True):
        yield from order.items


def plan_grants(ctx: Context) -> None:
    """The opening grant of each user (cents): 50.00 to 2 000.00."""
    rand = ctx.rng("grants").random
    ctx.grants = array("q", (int(50 + rand() * 1951) * 100 for _ in range(ctx.plan.users)))


def _initial_balances(ctx: Context) -> array[int]:
    return array("q", ctx.grants)


def _member_transfers(ctx: Context, balances: array[int], first_id: int) -> Iterator[Row]:
    """Member-to-member transfers after the orders; a sender never goes below zero."""
    rng, plan = ctx.rng("transfers"), ctx.plan
    notes = ("thanks!", "for lunch", "rent share", "gift", "")
    tid = first_id
    for k in range(plan.transfers if plan.users >= 2 else 0):
        sender, recipient = rng.randrange(plan.users), rng.randrange(plan.users)
        amount = rng.randint(1, 5000) * 10
        if sender == recipient or balances[sender] < amount:
            continue
        balances[sender] -= amount
        balances[recipient] += amount
        yield (
            tid, "transfer", ctx.user_id(sender), ctx.user_id(recipient), amount,
            rng.choice(notes), None, ctx.at(90 + 30 * k / plan.transfers),
        )  # fmt: skip
        tid += 1


def _ledger(ctx: Context) -> Iterator[Row]:
    """The credit ledger in time order: grants, order payments, member transfers."""
    n, first = ctx.plan.users, ctx.start["credit_transfer"]
    for i in range(n):
        yield (first + i, "grant", None, ctx.user_id(i), ctx.grants[i], "welcome credits",
               None, ctx.at(30 * i / n))  # fmt: skip
    balances = _initial_balances(ctx)
    next_id = first + n
    for order in _market_orders(ctx, balances, payments=True):
        yield from order.payments
        next_id += order.n_payments
    yield from _member_transfers(ctx, balances, next_id)


TAGS_PER_SEED = 60  # distinct tags a seed run creates when it writes posts
WORDS = tuple(w.lower() for w in (*ADJECTIVES, *NOUN_LIST))


def _tags(ctx: Context) -> Iterator[Row]:
    # Names carry their id, so seeding twice appends new tags instead of colliding.
    first = ctx.start["tag"]
    for i in range(TAGS_PER_SEED):
        yield (first + i, f"{WORDS[i % len(WORDS)]}-{first + i}")


def _posts(ctx: Context) -> Iterator[Row]:
    rng, n, first = ctx.rng("posts"), ctx.plan.posts, ctx.start["post"]
    for i in range(n):
        pid = first + i
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 6))]
        title = " ".join(words).capitalize()
        content = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80))) + "."
        created = ctx.at(30 + 300 * i / n)
        published = rng.random() < 0.9
        yield (
            pid, title, f"{'-'.join(words)}-{pid}", content, published,
            created if published else None, ctx.user_id(rng.randrange(ctx.plan.users)),
            created, created, None, 1,
        )  # fmt: skip


def _post_tags(ctx: Context) -> Iterator[Row]:
    rng, first_post, first_tag = ctx.rng("post_tags"), ctx.start["post"], ctx.start["tag"]
    for i in range(ctx.plan.posts):
        for tag in rng.sample(range(TAGS_PER_SEED), rng.randint(0, 3)):
            yield (first_post + i, first_tag + tag)


@dataclass(frozen=True)
class TableLoader:
    table: str
    rows: Callable[[Context], Iterator[Row]]
    wanted: Callable[[SeedPlan], bool]


# The registry, in foreign-key order.
LOADERS: tuple[TableLoader, ...] = (
    TableLoader("user", _users, lambda p: p.users > 0),
    TableLoader("user_profile", _profiles, lambda p: p.users > 0),
    TableLoader("product", _products, lambda p: p.products > 0),
    TableLoader("order", _orders, lambda p: p.orders > 0),
    TableLoader("order_item", _order_items, lambda p: p.orders > 0),
    TableLoader("credit_transfer", _ledger, lambda p: p.users > 0),
    TableLoader("tag", _tags, lambda p: p.posts > 0),
    TableLoader("post", _posts, lambda p: p.posts > 0),
    TableLoader("post_tag", _post_tags, lambda p: p.posts > 0),
)


def prepare(ctx: Context) -> None:
    """The planning pass: product arrays, final balances, exact row counts per table."""
    plan_catalog(ctx)
    plan_grants(ctx)
    balances = _initial_balances(ctx)
    items = transfers = 0
    for order in _market_orders(ctx, balances):
        items += order.n_items
        transfers += order.n_payments
    transfers += ctx.plan.users + sum(1 for _ in _member_transfers(ctx, balances, 0))
    ctx.balances = balances
    p = ctx.plan
    ctx.counts.update(
        user=p.users, user_profile=p.users, product=p.products, order=p.orders,
        order_item=items, credit_transfer=transfers, tag=TAGS_PER_SEED if p.posts else 0,
        post=p.posts, post_tag=sum(1 for _ in _post_tags(ctx)),
    )  # fmt: skip


# --- writing ---------------------------------------------------------------------------------


class Reporter(Protocol):
    def start(self, table: str, total: int) -> None: ...
    def advance(self, table: str, rows: int) -> None: ...


class _Silent:
    def start(self, table: str, total: int) -> None:
        pass

    def advance(self, table: str, rows: int) -> None:
        pass


async def _max_ids(conn: AsyncConnection) -> dict[str, int]:
    found = {}
    for name in ID_TABLES:
        table = TABLES[name]
        query = text(f"SELECT MAX(id) FROM {_quote(conn, table)}")  # noqa: S608 - our names
        value = (await conn.execute(query)).scalar()
        found[name] = int(value or 0) + 1
    return found


def _quote(conn: AsyncConnection, table: Table) -> str:
    return conn.dialect.identifier_preparer.format_table(table)


def _counted(rows: Iterator[Row], every: int, report: Callable[[int], None]) -> Iterator[Row]:
    n = 0
    for n, row in enumerate(rows, 1):
        yield row
        if n % every == 0:
            report(every)
    report(n % every)


Writer = Callable[[str, Iterator[Row], Callable[[int], None]], Awaitable[None]]


async def _writer(conn: AsyncConnection, batch_size: int) -> Writer:
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if conn.dialect.name == "postgresql":
        # One COPY per table fed by the generator: asyncpg sends the rows in chunks as they
        # come, so PostgreSQL ingests one chunk while Python generates the next.
        async def copy(table: str, rows: Iterator[Row], report: Callable[[int], None]) -> None:
            records = _counted(rows, batch_size, report)
            await driver.copy_records_to_table(table, records=records, columns=COLUMNS[table])

        return copy

    statements, converters = {}, {}
    for name, columns in COLUMNS.items():
        cols = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
        marks = ", ".join("?" * len(columns))
        table = _quote(conn, TABLES[name])
        statements[name] = f"INSERT INTO {table} ({cols}) VALUES ({marks})"  # noqa: S608
        # The column types' own bind processing (UTCDateTime -> naive UTC text, ...).
        converters[name] = [
            (pos, proc)
            for pos, col in enumerate(columns)
            if (proc := TABLES[name].c[col].type.bind_processor(conn.dialect)) is not None
        ]

    async def insert(table: str, rows: Iterator[Row], report: Callable[[int], None]) -> None:
        procs = converters[table]
        for batch in _batches(rows, batch_size):
            if procs:
                batch = [_convert(row, procs) for row in batch]
            await driver.executemany(statements[table], batch)
            report(len(batch))

    return insert


def _convert(row: Row, procs: Sequence[tuple[int, Callable[[Any], Any]]]) -> Row:
    values = list(row)
    for pos, proc in procs:
        values[pos] = proc(values[pos])
    return tuple(values)


async def _reset_sequences(conn: AsyncConnection) -> None:
    """Move each id sequence past the rows written with explicit ids."""
    for table in (TABLES[name] for name in ID_TABLES):
        name = _quote(conn, table)
        await conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence(:t, 'id'), "  # noqa: S608 - our names
                f"COALESCE((SELECT MAX(id) FROM {name}), 1), "
                f"(SELECT MAX(id) IS NOT NULL FROM {name}))"
            ),
            {"t": name},
        )


async def seed(
    engine: AsyncEngine,
    plan: SeedPlan,
    *,
    password_hash: str,
    reporter: Reporter | None = None,
) -> dict[str, int]:
    """Load `plan` into the (migrated) database of `engine`, in one transaction.

    Returns the rows written per table."""
    report = reporter or _Silent()
    loaders = [loader for loader in LOADERS if loader.wanted(plan)]
    async with engine.begin() as conn:
        ctx = Context(plan, await _max_ids(conn), password_hash, epoch_for(plan.seed))
        prepare(ctx)
        write = await _writer(conn, plan.batch_size)
        written = dict.fromkeys(COLUMNS, 0)
        for loader in loaders:
            report.start(loader.table, ctx.counts[loader.table])
        for loader in loaders:

            def advance(n: int, table: str = loader.table) -> None:
                written[table] += n
                report.advance(table, n)

            await write(loader.table, loader.rows(ctx), advance)
        if conn.dialect.name == "postgresql":
            await _reset_sequences(conn)
    return written
