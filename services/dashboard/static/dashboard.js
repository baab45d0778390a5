/* The operator dashboard: polls the JSON endpoints and draws them (ECharts). */
"use strict";

const PIPELINE_EVERY_MS = 3000;
const FUNDS_EVERY_MS = 5000;
const FUNDS_COLORS = ["#1f6feb", "#8250df", "#1a7f37", "#bf8700"];
const STATUS_TEXT = { settled: "已结算", reversed: "已撤销", pending_review: "待审核", accepted: "处理中",
  review_rejected: "审核未通过", trial: "预结算", rejected: "已拒付" };
const VISIT_TEXT = { inpatient: "住院", outpatient: "门诊统筹", chronic_outpatient: "慢性病门诊" };
const LAYER_TEXT = { basic: "基本医保", serious_illness: "大病保险", assistance: "医疗救助", backstop: "政府兜底" };
const STAGE_ORDER = ["eligibility", "basic", "insurer", "assistance", "backstop", "settlement", "operations"];
const STAGE_TEXT = { eligibility: "资格审核", basic: "基本医保", insurer: "大病保险", assistance: "医疗救助",
  backstop: "政府兜底", settlement: "结算确认", operations: "运维" };

let me = { user: "", role: "viewer", may_act: false };
const charts = {};

function $(id) { return document.getElementById(id); }
function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
/* "1234567.50" -> "1,234,567.50" without going through a float */
function yuan(text) {
  if (text === null || text === undefined) return "—";
  const [whole, frac] = String(text).split(".");
  const sign = whole.startsWith("-") ? "-" : "";
  const digits = whole.replace("-", "").replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return sign + digits + (frac !== undefined ? "." + frac : "");
}
function pct(text) { return text === null || text === undefined ? "—" : text + "%"; }
function time(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" });
}
function toast(message, isError) {
  const el = $("toast");
  el.textContent = message;
  el.className = isError ? "error" : "";
  el.style.display = "block";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.style.display = "none"; }, 6000);
}
function chart(id) {
  if (!charts[id]) charts[id] = echarts.init($(id), null, { renderer: "canvas" });
  return charts[id];
}
window.addEventListener("resize", () => Object.values(charts).forEach(c => c.resize()));

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  if (response.status === 401) { window.location.href = "/login"; throw new Error("请先登录"); }
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const error = new Error((body && body.error) || ("HTTP " + response.status));
    error.status = response.status;
    throw error;
  }
  return body;
}

/* ------------------------------------------------------------ pipeline */

function drawPipeline(p) {
  $("kpi-rate").textContent = p.throughput.per_second;
  $("kpi-rate-sub").textContent = "近1分钟 " + p.throughput.last_minute + " 笔";
  $("kpi-p50").textContent = p.latency.p50_ms === null ? "—" : p.latency.p50_ms + " ms";
  $("kpi-p99").textContent = p.latency.p99_ms === null ? "—" : p.latency.p99_ms + " ms";
  $("kpi-latency-sub").textContent = p.latency.window + "，" + p.latency.count + " 笔";
  $("kpi-dead").textContent = p.dead_letters.count;
  $("kpi-dead-card").classList.toggle("alert", p.dead_letters.count > 0);
  $("kpi-dead-sub").textContent = p.dead_letters.source === "operations" ? "未重放的死信" : "各服务已发出的死信（运维服务不可达）";
  $("kpi-stuck").textContent = p.stuck.count;
  $("kpi-stuck-card").classList.toggle("alert", p.stuck.count > 0);
  $("kpi-stuck-sub").textContent = "受理超过 " + p.stuck.after_seconds + " 秒仍无结算单";
  $("kpi-reviews").textContent = p.reviews.count;

  const series = p.throughput.series.map(([t, n]) => [new Date(t), n]);
  chart("chart-throughput").setOption({
    grid: { left: 40, right: 16, top: 20, bottom: 30 },
    tooltip: { trigger: "axis" },
    xAxis: { type: "time" },
    yAxis: { type: "value", name: "笔", minInterval: 1 },
    series: [{ name: "结算笔数", type: "bar", barMaxWidth: 12, data: series, itemStyle: { color: "#1f6feb" } }],
  });

  const stages = p.lag.stages.slice().sort((a, b) => STAGE_ORDER.indexOf(a.service) - STAGE_ORDER.indexOf(b.service));
  chart("chart-lag").setOption({
    grid: { left: 40, right: 16, top: 20, bottom: 30 },
    tooltip: { trigger: "axis" },
    xAxis: { type: "category", data: stages.map(s => STAGE_TEXT[s.service] || s.service) },
    yAxis: { type: "value", name: "条", minInterval: 1 },
    series: [{ name: "积压", type: "bar", data: stages.map(s => s.lag), itemStyle: { color: "#bf8700" } }],
  });
  $("lag-note").textContent = p.lag.unreachable.length ? "无法读取指标：" + p.lag.unreachable.map(s => STAGE_TEXT[s] || s).join("、") : "";

  const readonly = me.may_act ? "" : " readonly";
  const readonlyTitle = me.may_act ? "" : ' title="仅经办员可操作"';
  $("review-rows").innerHTML = p.reviews.items.map(r => `
    <tr data-claim-id="${esc(r.claim_id)}">
      <td>${esc(r.claim_id)}</td><td>${esc(r.hospital_code)}</td><td>${esc(r.person_id_masked)}</td>
      <td class="num">${yuan(r.total)}</td><td>${time(r.received_at)}</td>
      <td><button class="act approve${readonly}"${readonlyTitle} data-decision="approve">通过</button><button class="act reject${readonly}"${readonlyTitle} data-decision="reject">驳回</button></td>
    </tr>`).join("") || '<tr><td colspan="6" class="muted">暂无待审核</td></tr>';

  $("dead-rows").innerHTML = p.dead_letters.items.map(d => `
    <tr data-dead-letter-id="${esc(d.id)}">
      <td>${esc(STAGE_TEXT[d.stage] || d.stage)}</td><td>${esc(d.topic)}</td><td title="${esc(d.error)}">${esc((d.error || "").slice(0, 80))}</td>
      <td>${time(d.failed_at)}</td>
      <td>${d.status === "replayed" ? '<span class="muted">已重放</span>' : `<button class="act replay${readonly}"${readonlyTitle}>重放</button>`}</td>
    </tr>`).join("") || '<tr><td colspan="5" class="muted">暂无死信明细</td></tr>';
  $("dead-note").textContent = p.dead_letters.error || "";

  $("stuck-rows").innerHTML = p.stuck.items.map(s => `
    <tr><td>${esc(s.claim_id)}</td><td>${esc(s.hospital_code)}</td><td>${esc(s.person_id_masked)}</td><td>${time(s.waiting_since)}</td></tr>`
  ).join("") || '<tr><td colspan="4" class="muted">暂无卡单</td></tr>';
}

async function refreshPipeline() {
  try {
    drawPipeline(await api("/api/pipeline"));
    $("updated").textContent = "更新于 " + new Date().toLocaleTimeString("zh-CN", { hour12: false });
  } catch (e) {
    $("updated").textContent = "刷新失败：" + e.message;
  }
}

/* --------------------------------------------------------------- funds */

let fundsYear = null;

function drawFunds(f) {
  fundsYear = f.year;
  const yearSelect = $("year");
  const years = f.years.map(String).join(",");
  if (yearSelect.dataset.years !== years) {
    yearSelect.innerHTML = f.years.map(y => `<option value="${y}">${y}年</option>`).join("");
    yearSelect.dataset.years = years;
  }
  yearSelect.value = String(f.year);
  const policySelect = $("policy");
  const ids = f.policies.map(p => p.policy).join(",");
  if (policySelect.dataset.ids !== ids) {
    const chosen = policySelect.value;
    policySelect.innerHTML = '<option value="">全部</option>' + f.policies.map(p => `<option value="${esc(p.policy)}">${esc(p.name)}</option>`).join("");
    policySelect.dataset.ids = ids;
    policySelect.value = chosen;
  }
  $("elapsed").textContent = `时间进度 ${pct(f.elapsed_share)}（截至 ${f.today}）` + (f.warnings ? `，${f.warnings} 项预警` : "");

  const rows = [];
  const shown = f.policy ? f.policies.filter(p => p.policy === f.policy) : f.policies;
  for (const p of shown) {
    for (const line of p.lines) rows.push([p.name, line]);
  }
  if (!f.policy && f.policies.length > 1) for (const line of f.totals) rows.push(["全部统筹区合计", line]);
  $("budget-rows").innerHTML = rows.map(([name, l]) => {
    const width = l.spent_share === null ? 0 : Math.min(100, parseFloat(l.spent_share));
    const cls = l.state === "over" ? "over" : (l.state === "ahead" ? "warn" : "");
    return `<tr class="${cls}" data-policy="${esc(l.policy)}" data-fund="${esc(l.fund_code)}">
      <td>${esc(name)}</td><td>${esc(l.fund_code)} ${esc(l.fund_name)}</td>
      <td class="num">${yuan(l.budget)}</td><td class="num" data-figure="spent">${yuan(l.spent)}</td>
      <td class="num" data-figure="spent-share">${pct(l.spent_share)}</td>
      <td><div class="bar"><i style="width:${width}%"></i><b style="left:${parseFloat(l.elapsed_share)}%"></b></div></td>
      <td><span class="badge ${esc(l.state)}" data-figure="state">${esc(l.state_text)}</span></td></tr>`;
  }).join("") || '<tr><td colspan="7" class="muted">本年度无政策方案与结算数据</td></tr>';

  const budgetLines = (f.policy ? (shown[0] ? shown[0].lines : []) : f.totals).filter(l => l.budget !== null);
  chart("chart-budget").setOption({
    grid: { left: 50, right: 16, top: 24, bottom: 40 },
    tooltip: { trigger: "axis", valueFormatter: v => v + "%" },
    xAxis: { type: "category", data: budgetLines.map(l => l.fund_name.replace("城乡居民", "").replace("统筹基金", "")), axisLabel: { interval: 0, fontSize: 11 } },
    yAxis: { type: "value", name: "%", max: v => Math.max(100, Math.ceil(v.max)) },
    series: [{
      name: "支出进度", type: "bar",
      data: budgetLines.map((l, i) => ({ value: parseFloat(l.spent_share), itemStyle: { color: l.warning ? "#c53030" : FUNDS_COLORS[i % 4] } })),
      markLine: { symbol: "none", lineStyle: { color: "#c53030", type: "dashed" }, label: { formatter: "时间进度 {c}%", position: "insideStartTop" },
        data: [{ yAxis: parseFloat(f.elapsed_share) }] },
    }],
  });

  const overall = f.ratio.overall;
  $("ratio-overall").textContent = pct(overall.ratio);
  $("ratio-overall-sub").textContent = `（基金支付 ${yuan(overall.fund_total)} 元 ÷ 总费用 ${yuan(overall.total)} 元，${overall.claims} 人次）`;
  chart("chart-levels").setOption({
    grid: { left: 40, right: 16, top: 20, bottom: 30 },
    tooltip: { trigger: "axis", valueFormatter: v => v + "%" },
    xAxis: { type: "category", data: f.ratio.by_level.map(l => l.level_name), axisLabel: { interval: 0, fontSize: 11 } },
    yAxis: { type: "value", name: "%", max: 100 },
    series: [{ name: "实际补偿比", type: "bar", data: f.ratio.by_level.map(l => parseFloat(l.ratio)),
      label: { show: true, position: "top", formatter: p => pct(f.ratio.by_level[p.dataIndex].ratio) } }],
  });
  $("level-rows").innerHTML = f.ratio.by_level.map(l => `
    <tr data-level="${esc(l.level)}"><td>${esc(l.level_name)}</td><td class="num" data-figure="claims">${l.claims}</td>
    <td class="num" data-figure="total">${yuan(l.total)}</td><td class="num" data-figure="fund-total">${yuan(l.fund_total)}</td>
    <td class="num" data-figure="ratio">${pct(l.ratio)}</td></tr>`).join("") || '<tr><td colspan="5" class="muted">暂无</td></tr>';

  chart("chart-bands").setOption({
    grid: { left: 40, right: 16, top: 20, bottom: 30 },
    tooltip: { trigger: "axis" },
    xAxis: { type: "category", data: f.serious_illness.map(b => b.band) },
    yAxis: { type: "value", name: "人次", minInterval: 1 },
    series: [{ name: "人次", type: "bar", data: f.serious_illness.map(b => b.count), itemStyle: { color: "#8250df" }, label: { show: true, position: "top" } }],
  });
  $("band-rows").innerHTML = f.serious_illness.map((b, i) => `
    <tr data-band="${i}"><td>${esc(b.band)}</td><td class="num" data-figure="count">${b.count}</td><td class="num" data-figure="amount">${yuan(b.amount)}</td></tr>`).join("");

  $("hospital-rows").innerHTML = f.hospitals.map(h => `
    <tr data-hospital="${esc(h.hospital_code)}"><td>${esc(h.hospital_code)} ${esc(h.name)}</td><td>${esc(h.level_name)}</td>
    <td class="num" data-figure="claims">${h.claims}</td><td class="num" data-figure="average">${yuan(h.average_per_admission)}</td>
    <td class="num" data-figure="fund-total">${yuan(h.fund_total)}</td><td class="num" data-figure="ratio">${pct(h.ratio)}</td></tr>`).join("")
    || '<tr><td colspan="6" class="muted">暂无</td></tr>';
}

async function refreshFunds() {
  const params = new URLSearchParams();
  if ($("year").value) params.set("year", $("year").value);
  if ($("policy").value) params.set("policy", $("policy").value);
  try { drawFunds(await api("/api/funds?" + params.toString())); } catch (e) { toast("基金数据刷新失败：" + e.message, true); }
}

/* -------------------------------------------------------------- search */

async function search() {
  const claimId = $("search-input").value.trim();
  if (!claimId) return;
  const box = $("search-result");
  box.innerHTML = '<span class="muted">查询中…</span>';
  let found;
  try { found = await api("/api/claims/" + encodeURIComponent(claimId)); } catch (e) {
    box.innerHTML = `<span class="error">${esc(e.message)}</span>`; return;
  }
  const bill = found.one_bill;
  const head = `<div><b>${esc(found.claim_id)}</b> <span class="status ${esc(found.status)}" id="search-status">${esc(STATUS_TEXT[found.status] || found.status)}</span>
    医疗机构 ${esc(found.hospital_code)} · 参保人 <span id="search-person">${esc(found.person_id_masked)}</span>
    ${found.reversed_at ? " · 撤销于 " + time(found.reversed_at) : ""}</div>`;
  if (!bill) {
    box.innerHTML = head + `<p class="muted">尚无结算单${found.review_reason ? "：" + esc(found.review_reason) : ""}</p>`;
    return;
  }
  const amounts = [["总费用", bill.total], ["全自费", bill.self_pay], ["超限价自费", bill.over_limit_self_pay], ["先行自付", bill.pre_self_pay],
    ["政策范围内费用", bill.compliant], ["起付线", bill.deductible], ["基金支付合计", bill.fund_total], ["个人负担", bill.personal]];
  box.innerHTML = head + `
    <p class="muted">方案 ${esc(bill.policy)} · 结算时间 ${time(bill.settled_at)}</p>
    <table><tbody><tr>${amounts.map(([k]) => `<th class="num">${k}</th>`).join("")}</tr>
    <tr>${amounts.map(([k, v]) => `<td class="num" data-amount="${esc(k)}">${yuan(v)}</td>`).join("")}</tr></tbody></table>
    <h3 style="margin-top:12px">各层补偿</h3>
    ${(bill.layers || []).map(l => `<div class="layer" data-layer="${esc(l.layer)}"><span class="name">${esc(LAYER_TEXT[l.layer] || l.layer)}</span>
      <span class="num"> ${yuan(l.amount)} 元</span><div class="explanation">${esc(l.explanation)}</div></div>`).join("")}`;
}

/* ------------------------------------------------------------ clearing */

function clearingQuery() {
  const params = new URLSearchParams({ year: $("clearing-year").value });
  if ($("clearing-month").value) params.set("month", $("clearing-month").value);
  return params.toString();
}

async function loadClearing() {
  const query = clearingQuery();
  $("clearing-csv").href = "/api/clearing.csv?" + query;
  let c;
  try { c = await api("/api/clearing?" + query); } catch (e) { toast("清算查询失败：" + e.message, true); return; }
  const state = c.months ? c.months.map(m => `${m.period}${m.status === "closed" ? "已结账" : "未结账"}`).join("、")
    : (c.status === "closed" ? `已结账（${c.closed_at}，${c.closed_by}）` : "未结账，数字可能变化");
  $("clearing-basis").textContent = `${c.basis}。${state}`;
  $("clearing-rows").innerHTML = c.lines.map(l => `
    <tr><td>${esc(l.month)}</td><td>${esc(l.hospital_code)} ${esc(l.hospital_name)}</td><td>${esc(l.fund_code)} ${esc(l.fund_name)}</td>
    <td class="num">${l.count}</td><td class="num">${yuan(l.amount)}</td></tr>`).join("") || '<tr><td colspan="5" class="muted">本期无应付</td></tr>';
  $("clearing-total").textContent = yuan(c.amount);
}

/* ------------------------------------------------------------- actions */

async function act(path, body, done) {
  try {
    await api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    toast(done, false);
    refreshPipeline();
  } catch (e) {
    toast(e.message, true);
  }
}

document.addEventListener("click", event => {
  const button = event.target.closest("button.act");
  if (!button) return;
  const row = button.closest("tr");
  if (row.dataset.claimId) {
    const decision = button.dataset.decision;
    let reason = null;
    if (decision === "reject") {
      reason = window.prompt("驳回原因", "材料不全");
      if (reason === null) return;
    }
    act("/api/reviews/" + encodeURIComponent(row.dataset.claimId), { decision, reason },
      `单据 ${row.dataset.claimId} 已${decision === "approve" ? "审核通过" : "驳回"}`);
  } else if (row.dataset.deadLetterId) {
    act("/api/dead-letters/" + encodeURIComponent(row.dataset.deadLetterId) + "/replay", {}, "死信已提交重放");
  }
});

/* --------------------------------------------------------------- start */

function loop(fn, every) {
  const tick = async () => { await fn(); setTimeout(tick, every); };
  tick();
}

async function start() {
  me = await api("/api/me");
  $("who-name").textContent = me.user;
  $("who-role").textContent = me.role === "operator" ? "经办员" : "只读";
  $("who-role").classList.toggle("operator", me.role === "operator");
  $("clearing-month").innerHTML = '<option value="">全年</option>' + Array.from({ length: 12 }, (_, i) => `<option value="${i + 1}">${i + 1}月</option>`).join("");
  $("year").addEventListener("change", refreshFunds);
  $("policy").addEventListener("change", refreshFunds);
  $("search-button").addEventListener("click", search);
  $("search-input").addEventListener("keydown", e => { if (e.key === "Enter") search(); });
  $("clearing-load").addEventListener("click", loadClearing);
  loop(refreshPipeline, PIPELINE_EVERY_MS);
  await refreshFunds();
  $("clearing-year").value = fundsYear || new Date().getFullYear();
  loadClearing();
  setInterval(refreshFunds, FUNDS_EVERY_MS);
}

start();
