"""Merchants: the tenants. Every merchant-owned row carries merchant_id and every query filters on it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class Merchant(Base):
    __tablename__ = "merchants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=func.gen_random_uuid())
    name: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


async def create_merchant(session: AsyncSession, name: str) -> Merchant:
    merchant = Merchant(name=name)
    session.add(merchant)
    await session.flush()
    return merchant


async def ensure_merchant(session: AsyncSession, merchant_id: uuid.UUID) -> None:
    """The identity provider is the source of truth for who belongs to which merchant: a
    verified token naming a merchant we have not seen provisions it on its first write
    (just-in-time), instead of failing on the foreign key."""
    await session.execute(
        insert(Merchant).values(id=merchant_id, name=f"merchant {merchant_id}").on_conflict_do_nothing()
    )
