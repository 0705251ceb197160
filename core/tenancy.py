"""Merchants: the tenants. Every merchant-owned row carries merchant_id and every query filters on it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base
from core.errors import Forbidden


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


async def require_merchant(session: AsyncSession, merchant_id: uuid.UUID) -> None:
    """A valid token can outlive its merchant: refuse it before anything is written for it."""
    if await session.scalar(select(Merchant.id).where(Merchant.id == merchant_id)) is None:
        raise Forbidden("the merchant named by your token does not exist", code="unknown_merchant")
