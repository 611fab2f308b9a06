"""The Luma schema of SPEC.md: the default schema the project ships.

``enums`` are the allowed values of a field: ingestion refuses any other (with a did-you-mean),
and the checker warns about a comparison with a value outside them (docs/language.md §15)."""

from functools import cache

from cdp.schema.model import Schema

# ISO 3166-1 alpha-2: the 249 officially assigned codes (Debian's iso-codes 4.15)
ISO_3166_ALPHA_2 = (
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
)

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
        "home_address.country": list(ISO_3166_ALPHA_2),
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
