"""Merchants: the tenants. Every merchant-owned row carries merchant_id and every query filters on it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func
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
