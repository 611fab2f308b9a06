"""The Luma schema of SPEC.md: the default schema the project ships."""

from functools import cache

from cdp.schema.model import Schema

LUMA_SCHEMA = {
    "profile": {
        "person.first_name": "string",
        "person.last_name": "string",
        "person.birth_date": "date",
        "person.gender": "string",
        "email": "string",
        "phone": "string",
        "crm_id": "string",
        "home_address.street": "string",
        "home_address.city": "string",
        "home_address.postal_code": "string",
        "home_address.country": "string",
        "lifetime_value": "number",
        "loyalty.id": "string",
        "loyalty.tier": "string",
        "loyalty.points": "integer",
        "loyalty.joined": "date",
        "preferred_category": "string",
        "preferred_size": "string",
        "interests": "list<string>",
        "email_opt_in": "boolean",
        "consents.email": "string",
        "consents.sms": "string",
        "consents.ads": "string",
        "created_at": "datetime",
    },
    "event": {
        "channel": "string",
        "device.type": "string",
        "page.url": "string",
        "product.sku": "string",
        "product.name": "string",
        "product.category": "string",
        "product.size": "string",
        "product.price": "number",
        "product.quantity": "integer",
        "order.id": "string",
        "order.total": "number",
        "order.currency": "string",
        "campaign.id": "string",
        "campaign.name": "string",
    },
    "event_types": [
        "pageView", "productView", "addToCart", "removeFromCart", "checkout", "purchase",
        "login", "emailSent", "emailOpen", "emailClick", "callCenter",
    ],
    "enums": {
        "loyalty.tier": ["bronze", "silver", "gold", "platinum"],
        "preferred_category": ["mens", "womens", "kids", "gear"],
        "preferred_size": ["XS", "S", "M", "L", "XL", "XXL"],
        "consents.email": ["y", "n"],
        "consents.sms": ["y", "n"],
        "consents.ads": ["y", "n"],
        "channel": ["web", "mobile", "email", "call_center", "pos"],
        "device.type": ["desktop", "phone", "tablet"],
    },
}


@cache
def luma_schema() -> Schema:
    return Schema.from_dict(LUMA_SCHEMA)
