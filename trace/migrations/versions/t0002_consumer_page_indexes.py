"""indexes for the consumer page

The consumer page reads a lot's steps and its holders. At a million events two reads dominated:

- a lot's in-transit holders (its open shipments): shipments were indexed only by destination,
  so the look-up scanned every shipment (~10 ms at 100,000 events, ~100 ms at a million). An
  index on (lot_key, status) makes it a few point reads.
- a lot's steps: ``ix_trace_event_lots_lot_time`` (lot_key, event_time) found the rows, then
  each row cost a random table page. The covering index (lot_key, event_time, log_index, role,
  quantity, uom) replaces it: same prefix for the date-range queries, and the step rows come
  from the index alone.

Existing rows need nothing else: both indexes are built from them.

Revision ID: t0002
Revises: t0001
Create Date: 2026-11-22 02:20:00.000000
"""
from alembic import op


revision = 't0002'
down_revision = 't0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('trace_shipments', schema=None) as batch_op:
        batch_op.create_index('ix_trace_shipments_lot_status', ['lot_key', 'status'], unique=False)
    with op.batch_alter_table('trace_event_lots', schema=None) as batch_op:
        batch_op.create_index('ix_trace_event_lots_lot_cover',
                              ['lot_key', 'event_time', 'log_index', 'role', 'quantity', 'uom'], unique=False)
        batch_op.drop_index('ix_trace_event_lots_lot_time')


def downgrade() -> None:
    with op.batch_alter_table('trace_event_lots', schema=None) as batch_op:
        batch_op.create_index('ix_trace_event_lots_lot_time', ['lot_key', 'event_time'], unique=False)
        batch_op.drop_index('ix_trace_event_lots_lot_cover')
    with op.batch_alter_table('trace_shipments', schema=None) as batch_op:
        batch_op.drop_index('ix_trace_shipments_lot_status')
