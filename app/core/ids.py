"""How the ledger's documents are keyed: one delivery per campaign and recipient, and a
campaign's batches by their sequence number (zero-padded, so they sort in order)."""


def delivery_id(campaign_id: str, customer_id: str) -> str:
    return f"{campaign_id}:{customer_id}"


def batch_id(campaign_id: str, seq: int) -> str:
    return f"{campaign_id}:{seq:09d}"
