"""The `extensions.code` values a caller of `/open/graphql` and `/share/graphql` can meet, with
what each means and what to do — the workbench's error panel, `/graphiql/errors` and its twin
`/graphiql/errors.json`. tests/workbench/test_workbench.py checks this list against the codes the
endpoints' modules raise, both ways."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int  # the HTTP status; 200 for a field error (the rest of `data` stands)
    kind: str  # "request" (nothing ran, no `data`), "field" (that field is null), "service"
    zh: str
    en: str
    tiers: tuple[str, ...] = ("open", "share")


KIND_LABELS = {"request": "请求 request", "field": "字段 field", "service": "服务 service"}
KINDS = {
    "request": "请求错误：查询未执行，响应没有 data",
    "field": "字段错误：该字段为 null，其余结果照常返回",
    "service": "服务错误：稍后重试（见 Retry-After）",
}

CODES: tuple[ErrorCode, ...] = (
    # the request itself
    ErrorCode(
        "BAD_REQUEST",
        400,
        "request",
        "请求格式不对：需要 JSON 对象，含字符串 query，可选 variables / operationName。",
        "The body is not a GraphQL request: a JSON object with a string `query`.",
    ),
    ErrorCode(
        "BATCHING_NOT_SUPPORTED",
        400,
        "request",
        "不支持批量请求：一次只发一个操作。",
        "Send one operation per request; arrays are refused.",
    ),
    ErrorCode(
        "PAYLOAD_TOO_LARGE",
        413,
        "request",
        "请求体过大。",
        "The request body is over the size limit.",
    ),
    ErrorCode(
        "UNSUPPORTED_MEDIA_TYPE",
        415,
        "request",
        "请以 Content-Type: application/json 发送。",
        "Send `Content-Type: application/json`.",
    ),
    ErrorCode(
        "METHOD_NOT_ALLOWED",
        405,
        "request",
        "方法不允许：开放层可用 GET（仅查询）或 POST，共享层只用 POST。",
        "Open tier: GET (queries only) or POST; share tier: POST.",
    ),
    ErrorCode(
        "NOT_ACCEPTABLE",
        406,
        "request",
        "Accept 须包含 application/graphql-response+json 或 application/json。",
        "Accept `application/graphql-response+json` or `application/json`.",
    ),
    # GraphQL request errors (resolvers.errors): the operation does not run
    ErrorCode(
        "GRAPHQL_PARSE_FAILED",
        400,
        "request",
        "查询语法错误，见 locations 指出的位置。",
        "The query does not parse; see `locations`.",
    ),
    ErrorCode(
        "GRAPHQL_VALIDATION_FAILED",
        400,
        "request",
        "查询不符合您的 schema：字段或参数不存在（对您不可见的数据集和字段在 schema 中本就没有）。",
        "The query does not match your schema: a field or argument that does not exist (for you).",
    ),
    ErrorCode(
        "BAD_USER_INPUT",
        400,
        "request",
        "变量或参数的值不合法（类型、格式、游标）。",
        "A variable or argument value is not valid (type, format, cursor).",
    ),
    ErrorCode(
        "QUERY_TOO_DEEP",
        400,
        "request",
        "查询嵌套过深，请拆分。",
        "The query nests too deeply; split it.",
    ),
    ErrorCode(
        "QUERY_TOO_COMPLEX",
        400,
        "request",
        "查询的复杂度超过上限：减少 first 或字段。",
        "The query's cost is over the limit: ask for fewer rows or fields.",
    ),
    ErrorCode(
        "TOO_MANY_ALIASES",
        400,
        "request",
        "别名过多。",
        "Too many aliases in one query.",
    ),
    ErrorCode(
        "TOO_MANY_ROOT_FIELDS",
        400,
        "request",
        "一次查询的根字段过多。",
        "Too many root fields in one query.",
    ),
    ErrorCode(
        "PAGE_SIZE_EXCEEDED",
        400,
        "request",
        "first 超过每页上限：用 pageInfo.endCursor 与 after 翻页。",
        "`first` is over the page limit: page with `after` and `pageInfo.endCursor`.",
    ),
    ErrorCode(
        "FILTER_TOO_LARGE",
        400,
        "request",
        "where 条件过大（in 列表过长或条件过多）。",
        "The `where` filter is too large.",
    ),
    ErrorCode(
        "OPERATION_NOT_SUPPORTED",
        400,
        "request",
        "只支持查询（query），不支持变更或订阅。",
        "Only queries run here; no mutations or subscriptions.",
    ),
    # who is calling
    ErrorCode(
        "UNAUTHENTICATED",
        401,
        "request",
        "凭据无效或已过期：开放层检查 API Key，共享层请重新登录取得令牌。",
        "The API key (open tier) or bearer token (share tier) is missing, invalid or expired.",
    ),
    ErrorCode(
        "SIGNATURE_REQUIRED",
        401,
        "request",
        "本部门的请求须带 RFC 9421 签名。",
        "Requests of this department must carry an RFC 9421 signature.",
        ("share",),
    ),
    ErrorCode(
        "INVALID_SIGNATURE",
        401,
        "request",
        "请求签名无效。",
        "The request signature does not verify.",
        ("share",),
    ),
    ErrorCode(
        "RATE_LIMITED",
        429,
        "request",
        "访问过于频繁：按 Retry-After 秒数等待后重试（匿名访问每个地址有额度，API Key 有各自额度）。",
        "Rate limit or quota reached; wait `Retry-After` seconds.",
    ),
    ErrorCode(
        "CORS_NOT_ALLOWED",
        403,
        "request",
        "跨域预检被拒：该来源、方法或请求头不在允许名单中。",
        "A cross-origin preflight was refused: origin, method or header not allowed.",
    ),
    # field errors: `data` stands, that field is null
    ErrorCode(
        "FORBIDDEN",
        403,
        "field",
        "无权访问该数据集：有条件开放/共享的数据需经批准（开放层：获批企业的 API Key；共享层：授权）。"
        "作为 HTTP 403 时：令牌缺少所需 scope。",
        "Not allowed to read this dataset without an approved grant or API key (a field error); "
        "as an HTTP 403: the token lacks the scope.",
    ),
    ErrorCode(
        "FORBIDDEN_FIELD",
        200,
        "field",
        "无权读取该字段（如敏感个人信息需授权列明），该字段为 null，其余照常返回。",
        "Not allowed to read this field; it is null, the rest of the answer stands.",
    ),
    ErrorCode(
        "FORBIDDEN_FILTER",
        200,
        "field",
        "不能按该字段筛选或排序：其值对您是脱敏或加密的。",
        "You may not filter or order by a field you do not read in clear.",
    ),
    # the service
    ErrorCode(
        "AUDIT_UNAVAILABLE",
        503,
        "service",
        "审计日志不可用：无审计不返回数据，请稍后重试。",
        "The access log is unavailable; no data is served without it.",
    ),
    ErrorCode(
        "DATABASE_UNAVAILABLE",
        503,
        "service",
        "数据库暂不可用，请稍后重试。",
        "The database is unavailable; retry shortly.",
    ),
    ErrorCode(
        "RATE_LIMIT_UNAVAILABLE",
        503,
        "service",
        "限流计数存储不可用：不能限流时不提供服务，请稍后重试。",
        "The rate-limit store is unavailable; retry shortly.",
    ),
    ErrorCode(
        "REDIS_UNAVAILABLE",
        503,
        "service",
        "共享存储暂不可用，请稍后重试。",
        "A shared store is unavailable; retry shortly.",
    ),
    ErrorCode(
        "SERVICE_BUSY",
        503,
        "service",
        "网关繁忙，请稍后重试。",
        "The gateway is busy; retry shortly.",
    ),
    ErrorCode(
        "SIGNING_UNAVAILABLE",
        503,
        "service",
        "应答签名服务不可用：共享层应答必须签名，请稍后重试。",
        "Response signing is unavailable; share-tier answers are always signed.",
        ("share",),
    ),
    ErrorCode(
        "SIGNATURE_CHECK_UNAVAILABLE",
        503,
        "service",
        "请求签名暂无法校验，请稍后重试。",
        "Request signatures cannot be checked right now; retry shortly.",
        ("share",),
    ),
    ErrorCode(
        "INTERNAL_SERVER_ERROR",
        500,
        "service",
        "内部错误：已记录，请提供响应头 X-Request-ID 以便排查。",
        "An internal error, logged under the answer's X-Request-ID.",
    ),
)


def errors_document() -> dict[str, Any]:
    return {"kinds": KINDS, "codes": [{**asdict(c), "tiers": list(c.tiers)} for c in CODES]}
