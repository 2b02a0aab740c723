#!/usr/bin/env python3
"""Writes the kubesignal Grafana dashboards (dashboards/*.json).

The committed JSON is what Grafana and the tests read; this script only keeps the seven
dashboards consistent (same variables, panel defaults, links). Run it after editing and commit
both: `python3 dashboards/generate.py` (or `--out DIR` to write elsewhere; the tests use it to
check that the committed JSON is what this script produces).

Conventions (checked by tests/bundle_dashboards.rs): schemaVersion 39, stable uid, no id, a
`datasource` variable used by every panel and target, `cluster`/`namespace`/`workload`/`node`
variables from label_values(), timeseries/stat/table panels only, a unit on every panel,
`$__rate_interval` in every rate/increase, and links that carry variables and the time range.
"""

import argparse
import json
import os

DS = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["kubesignal"]
HERE = os.path.dirname(os.path.abspath(__file__))

UID = {
    "node": "kubesignal-use-node",
    "cluster": "kubesignal-use-cluster",
    "workload": "kubesignal-use-workload",
    "red": "kubesignal-red-service",
    "slo_overview": "kubesignal-slo-overview",
    "slo_detail": "kubesignal-slo",
    "self": "kubesignal-self-health",
}

# Data-link suffix that keeps the data source and the time range when drilling down.
KEEP = "${datasource:queryparam}&${__url_time_range}&var-cluster=${cluster}"

STATUS_COLORS = {
    "1xx": "#EAB839",
    "2xx": "#7EB26D",
    "3xx": "#6ED0E0",
    "4xx": "#EF843C",
    "5xx": "#E24D42",
}


# ---------------------------------------------------------------- variables


def datasource_var():
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"selected": False, "text": "default", "value": "default"},
        "hide": 0,
        "refresh": 1,
        "regex": "",
    }


def query_var(name, label, query, multi=False, include_all=False, hide=0):
    v = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "hide": hide,
        "regex": "",
        "current": {},
        "options": [],
    }
    if include_all:
        # `.*` also matches series without the label (single-cluster setups have no `cluster`).
        v["allValue"] = ".*"
    return v


def cluster_var(metric):
    return query_var("cluster", "Cluster", f"label_values({metric}, cluster)", include_all=True, hide=2)


# ---------------------------------------------------------------- panels


def target(expr, legend="__auto", ref="A", instant=False, table=False):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": not instant}
    if instant:
        t["instant"] = True
    if table:
        t["format"] = "table"
        t["instant"] = True
        t["range"] = False
    return t


def thresholds(*steps):
    """steps: (color, value) pairs after the base green step."""
    s = [{"color": "green", "value": None}]
    s += [{"color": c, "value": v} for c, v in steps]
    return {"mode": "absolute", "steps": s}


class Layout:
    """Places panels left to right on a 24-column grid."""

    def __init__(self):
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, panel, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        panel["id"] = self.next_id
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        return panel


def timeseries(title, desc, targets, unit, stack=False, th=None, overrides=None, min0=True, max1=False, fill=10):
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 100 if stack else fill,
        "showPoints": "never",
        "spanNulls": True,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "axisSoftMin": 0 if min0 else None,
        "thresholdsStyle": {"mode": "dashed" if th else "off"},
    }
    if not min0:
        del custom["axisSoftMin"]
    defaults = {"unit": unit, "custom": custom, "color": {"mode": "palette-classic"}}
    if max1:
        defaults["custom"]["axisSoftMax"] = 1
    if th:
        defaults["thresholds"] = th
    return {
        "type": "timeseries",
        "title": title,
        "description": desc,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"], "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(title, desc, expr, unit, th=None, decimals=None, color_mode="value"):
    defaults = {"unit": unit, "color": {"mode": "thresholds"}, "thresholds": th or thresholds()}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": desc,
        "datasource": DS,
        "targets": [target(expr, legend="__auto", instant=True)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": color_mode,
            "graphMode": "area",
            "justifyMode": "auto",
            "textMode": "auto",
        },
    }


def table(title, desc, targets, unit, overrides=None, rename=None, hide=("Time",)):
    exclude = {h: True for h in hide}
    return {
        "type": "table",
        "title": title,
        "description": desc,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit, "custom": {"align": "auto"}}, "overrides": overrides or []},
        "options": {"showHeader": True, "cellHeight": "sm"},
        "transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": exclude, "renameByName": rename or {}}},
        ],
    }


def link_override(field, title, url, unit=None):
    props = [{"id": "links", "value": [{"title": title, "url": url}]}]
    if unit:
        props.append({"id": "unit", "value": unit})
    return {"matcher": {"id": "byName", "options": field}, "properties": props}


def unit_override(field, unit, th=None, display_name=None):
    props = [{"id": "unit", "value": unit}]
    if th:
        props.append({"id": "thresholds", "value": th})
        props.append({"id": "custom.cellOptions", "value": {"type": "color-text"}})
    if display_name:
        props.append({"id": "displayName", "value": display_name})
    return {"matcher": {"id": "byName", "options": field}, "properties": props}


def color_override(name, color):
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
    }


def dashboard(key, title, desc, variables, panels, time="now-1h"):
    return {
        "uid": UID[key],
        "title": title,
        "description": desc,
        "tags": TAGS,
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": time, "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "kubesignal",
                "type": "dashboards",
                "tags": TAGS,
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": [datasource_var()] + variables},
        "panels": panels,
    }


# ---------------------------------------------------------------- USE: node

def use_node():
    L = Layout()
    sel = 'cluster=~"$cluster", node="$node"'
    vars_ = [
        cluster_var("kubesignal_node_cpu_capacity_cores"),
        query_var("node", "Node", 'label_values(kubesignal_node_cpu_capacity_cores{cluster=~"$cluster"}, node)'),
    ]
    p = []
    p.append(L.place(stat("CPU capacity (cores)", "CPU cores of the node.", f"kubesignal_node_cpu_capacity_cores{{{sel}}}", "short"), 4, 4))
    p.append(L.place(stat("Memory capacity", "Memory of the node.", f"kubesignal_node_memory_capacity_bytes{{{sel}}}", "bytes"), 4, 4))
    p.append(L.place(stat("CPU utilization", "Share of the node's CPU in use now.", f"kubesignal_node_cpu_utilization_ratio{{{sel}}}", "percentunit",
                          th=thresholds(("orange", 0.7), ("red", 0.9))), 4, 4))
    p.append(L.place(stat("Memory utilization", "Working set over capacity.", f"kubesignal_node_memory_utilization_ratio{{{sel}}}", "percentunit",
                          th=thresholds(("orange", 0.8), ("red", 0.9))), 4, 4))
    p.append(L.place(stat("Root filesystem used", "Share of the node's root filesystem in use.", f'kubesignal_node_filesystem_used_ratio{{{sel}, fs="root"}}', "percentunit",
                          th=thresholds(("orange", 0.8), ("red", 0.9))), 4, 4))
    p.append(L.place(stat("Image filesystem used", "Share of the container-image filesystem in use.", f'kubesignal_node_filesystem_used_ratio{{{sel}, fs="image"}}', "percentunit",
                          th=thresholds(("orange", 0.8), ("red", 0.9))), 4, 4))
    p.append(L.place(timeseries("CPU utilization", "Utilization: share of the node's CPU cores busy.",
                                [target(f"kubesignal_node_cpu_utilization_ratio{{{sel}}}", "utilization")], "percentunit",
                                th=thresholds(("red", 0.9)), max1=True), 12, 8))
    p.append(L.place(timeseries("CPU saturation (pressure stall)", "Saturation: share of time some / all tasks waited for CPU (PSI). Empty on nodes without PSI.",
                                [target(f"rate(kubesignal_node_cpu_pressure_seconds_total{{{sel}}}[$__rate_interval])", "{{kind}}")], "percentunit",
                                th=thresholds(("red", 0.25))), 12, 8))
    p.append(L.place(timeseries("Memory utilization", "Utilization: working set over capacity.",
                                [target(f"kubesignal_node_memory_utilization_ratio{{{sel}}}", "utilization")], "percentunit",
                                th=thresholds(("red", 0.9)), max1=True), 12, 8))
    p.append(L.place(timeseries("Memory saturation (pressure stall)", "Saturation: share of time some / all tasks stalled on memory (PSI).",
                                [target(f"rate(kubesignal_node_memory_pressure_seconds_total{{{sel}}}[$__rate_interval])", "{{kind}}")], "percentunit",
                                th=thresholds(("red", 0.1))), 12, 8))
    p.append(L.place(timeseries("Network errors", "Errors: receive and transmit errors per second on the node's interfaces.",
                                [target(f"rate(kubesignal_node_network_receive_errors_total{{{sel}}}[$__rate_interval])", "receive", "A"),
                                 target(f"rate(kubesignal_node_network_transmit_errors_total{{{sel}}}[$__rate_interval])", "transmit", "B")], "cps"), 12, 8))
    p.append(L.place(timeseries("Filesystem used", "Share of the root and image filesystems in use.",
                                [target(f"kubesignal_node_filesystem_used_ratio{{{sel}}}", "{{fs}}")], "percentunit",
                                th=thresholds(("orange", 0.8), ("red", 0.9)), max1=True), 12, 8))
    p.append(L.place(table("Workloads on this node", "CPU and memory of each workload's containers on this node; the workload links to its USE dashboard.",
                           [target(f"sum by (namespace, workload) (rate(kubesignal_container_cpu_usage_seconds_total{{{sel}}}[$__rate_interval]))", ref="A", table=True),
                            target(f"sum by (namespace, workload) (kubesignal_container_memory_working_set_bytes{{{sel}}})", ref="B", table=True)],
                           "short",
                           overrides=[
                               link_override("workload", "USE by workload",
                                             f"/d/{UID['workload']}?{KEEP}&var-namespace=${{__data.fields.namespace}}&var-workload=${{__data.fields.workload}}"),
                               unit_override("Value #A", "short", display_name="CPU (cores)"),
                               unit_override("Value #B", "bytes", display_name="Memory working set"),
                           ]), 24, 10))
    return dashboard("node", "kubesignal / USE / Node", "Utilization, saturation and errors of one node.", vars_, p)


# ---------------------------------------------------------------- USE: cluster

def use_cluster():
    L = Layout()
    c = 'cluster=~"$cluster"'
    vars_ = [cluster_var("kubesignal_node_cpu_capacity_cores")]
    p = []
    p.append(L.place(stat("Nodes", "Nodes reporting through the agent.", f"count(kubesignal_node_cpu_capacity_cores{{{c}}})", "none"), 6, 4))
    p.append(L.place(stat("CPU utilization", "Cluster CPU in use over cluster CPU capacity.",
                          f"sum(rate(kubesignal_node_cpu_usage_seconds_total{{{c}}}[$__rate_interval])) / sum(kubesignal_node_cpu_capacity_cores{{{c}}})",
                          "percentunit", th=thresholds(("orange", 0.7), ("red", 0.9))), 6, 4))
    p.append(L.place(stat("Memory utilization", "Cluster working set over cluster memory capacity.",
                          f"sum(kubesignal_node_memory_working_set_bytes{{{c}}}) / sum(kubesignal_node_memory_capacity_bytes{{{c}}})",
                          "percentunit", th=thresholds(("orange", 0.8), ("red", 0.9))), 6, 4))
    p.append(L.place(stat("Worst memory pressure", "Highest share of time some task stalled on memory (PSI some) on any node.",
                          f'max(rate(kubesignal_node_memory_pressure_seconds_total{{{c}, kind="some"}}[$__rate_interval]))', "percentunit",
                          th=thresholds(("orange", 0.05), ("red", 0.1))), 6, 4))
    p.append(L.place(timeseries("CPU utilization by node", "Each node's CPU use divided by the cluster's CPU capacity: the stack adds up to the cluster's utilization.",
                                [target(f"sum by (node) (rate(kubesignal_node_cpu_usage_seconds_total{{{c}}}[$__rate_interval])) / scalar(sum(kubesignal_node_cpu_capacity_cores{{{c}}}))", "{{node}}")],
                                "percentunit", stack=True, max1=True), 12, 8))
    p.append(L.place(timeseries("Memory utilization by node", "Each node's working set divided by the cluster's memory capacity: the stack adds up to the cluster's utilization.",
                                [target(f"sum by (node) (kubesignal_node_memory_working_set_bytes{{{c}}}) / scalar(sum(kubesignal_node_memory_capacity_bytes{{{c}}}))", "{{node}}")],
                                "percentunit", stack=True, max1=True), 12, 8))
    p.append(L.place(timeseries("CPU saturation by node", "Share of time some task waited for CPU (PSI some), per node.",
                                [target(f'rate(kubesignal_node_cpu_pressure_seconds_total{{{c}, kind="some"}}[$__rate_interval])', "{{node}}")],
                                "percentunit", th=thresholds(("red", 0.25))), 12, 8))
    p.append(L.place(timeseries("Memory saturation by node", "Share of time some task stalled on memory (PSI some), per node.",
                                [target(f'rate(kubesignal_node_memory_pressure_seconds_total{{{c}, kind="some"}}[$__rate_interval])', "{{node}}")],
                                "percentunit", th=thresholds(("red", 0.1))), 12, 8))
    p.append(L.place(timeseries("Network errors by node", "Receive plus transmit errors per second, stacked per node.",
                                [target(f"sum by (node) (rate(kubesignal_node_network_receive_errors_total{{{c}}}[$__rate_interval])) + sum by (node) (rate(kubesignal_node_network_transmit_errors_total{{{c}}}[$__rate_interval]))", "{{node}}")],
                                "cps", stack=True), 12, 8))
    p.append(L.place(timeseries("Root filesystem used by node", "Share of each node's root filesystem in use.",
                                [target(f'kubesignal_node_filesystem_used_ratio{{{c}, fs="root"}}', "{{node}}")],
                                "percentunit", th=thresholds(("orange", 0.8), ("red", 0.9)), max1=True), 12, 8))
    p.append(L.place(table("Nodes", "Current utilization per node; the node name opens its USE dashboard.",
                           [target(f"kubesignal_node_cpu_utilization_ratio{{{c}}}", ref="A", table=True),
                            target(f"kubesignal_node_memory_utilization_ratio{{{c}}}", ref="B", table=True),
                            target(f'kubesignal_node_filesystem_used_ratio{{{c}, fs="root"}}', ref="C", table=True)],
                           "percentunit",
                           overrides=[
                               link_override("node", "USE by node", f"/d/{UID['node']}?{KEEP}&var-node=${{__data.fields.node}}"),
                               unit_override("Value #A", "percentunit", thresholds(("orange", 0.7), ("red", 0.9)), "CPU"),
                               unit_override("Value #B", "percentunit", thresholds(("orange", 0.8), ("red", 0.9)), "Memory"),
                               unit_override("Value #C", "percentunit", thresholds(("orange", 0.8), ("red", 0.9)), "Root filesystem"),
                           ], hide=("Time", "__name__", "fs", "job", "instance")), 24, 10))
    return dashboard("cluster", "kubesignal / USE / Cluster", "Utilization, saturation and errors of the whole cluster, per node.", vars_, p)


# ---------------------------------------------------------------- USE: namespace and workload

def use_workload():
    L = Layout()
    base = "kubesignal_container_cpu_usage_seconds_total"
    vars_ = [
        cluster_var(base),
        query_var("namespace", "Namespace", f'label_values({base}{{cluster=~"$cluster"}}, namespace)', multi=True, include_all=True),
        query_var("workload", "Workload", f'label_values({base}{{cluster=~"$cluster", namespace=~"$namespace"}}, workload)', multi=True, include_all=True),
    ]
    s = 'cluster=~"$cluster", namespace=~"$namespace", workload=~"$workload"'
    by = "namespace, workload"
    p = []
    p.append(L.place(timeseries("CPU usage (cores)", "Utilization: CPU cores used by each workload's containers.",
                                [target(f"sum by ({by}) (rate(kubesignal_container_cpu_usage_seconds_total{{{s}}}[$__rate_interval]))", "{{namespace}}/{{workload}}")],
                                "short", stack=True), 12, 8))
    p.append(L.place(timeseries("CPU use of limit", "Utilization against the limit, highest container per workload (absent without a limit).",
                                [target(f"max by ({by}) (kubesignal_container_cpu_limit_utilization_ratio{{{s}}})", "{{namespace}}/{{workload}}")],
                                "percentunit", th=thresholds(("orange", 0.8), ("red", 0.95))), 12, 8))
    p.append(L.place(timeseries("CPU throttling", "Saturation: share of CFS periods in which the container was throttled. Above 25% latency usually suffers.",
                                [target(f"sum by ({by}, container) (rate(kubesignal_container_cpu_cfs_throttled_periods_total{{{s}}}[$__rate_interval])) / sum by ({by}, container) (rate(kubesignal_container_cpu_cfs_periods_total{{{s}}}[$__rate_interval]))",
                                        "{{namespace}}/{{workload}}/{{container}}")],
                                "percentunit", th=thresholds(("red", 0.25)), max1=True), 12, 8))
    p.append(L.place(timeseries("Memory working set", "Utilization: working set of each workload's containers.",
                                [target(f"sum by ({by}) (kubesignal_container_memory_working_set_bytes{{{s}}})", "{{namespace}}/{{workload}}")],
                                "bytes", stack=True), 12, 8))
    p.append(L.place(timeseries("Memory use of limit", "Working set over the memory limit, highest container per workload. Near 100% the kernel OOM-kills.",
                                [target(f"max by ({by}) (kubesignal_container_memory_limit_utilization_ratio{{{s}}})", "{{namespace}}/{{workload}}")],
                                "percentunit", th=thresholds(("orange", 0.8), ("red", 0.95))), 12, 8))
    p.append(L.place(timeseries("Container restarts", "Errors: container restarts per interval.",
                                [target(f"sum by ({by}, container) (increase(kubesignal_container_restarts_total{{{s}}}[$__rate_interval]))", "{{namespace}}/{{workload}}/{{container}}")],
                                "short", th=thresholds(("red", 1))), 12, 8))
    p.append(L.place(timeseries("Network received", "Bytes per second received by each workload's pods.",
                                [target(f"sum by ({by}) (rate(kubesignal_pod_network_receive_bytes_total{{{s}}}[$__rate_interval]))", "{{namespace}}/{{workload}}")],
                                "Bps", stack=True), 12, 8))
    p.append(L.place(timeseries("Network transmitted", "Bytes per second sent by each workload's pods.",
                                [target(f"sum by ({by}) (rate(kubesignal_pod_network_transmit_bytes_total{{{s}}}[$__rate_interval]))", "{{namespace}}/{{workload}}")],
                                "Bps", stack=True), 12, 8))
    p.append(L.place(timeseries("Network errors", "Errors: receive and transmit errors per second of each workload's pods.",
                                [target(f"sum by ({by}) (rate(kubesignal_pod_network_receive_errors_total{{{s}}}[$__rate_interval])) + sum by ({by}) (rate(kubesignal_pod_network_transmit_errors_total{{{s}}}[$__rate_interval]))", "{{namespace}}/{{workload}}")],
                                "cps"), 12, 8))
    p.append(L.place(timeseries("OOM-killed containers", "Containers whose last termination was an OOM kill (0 for workloads without one).",
                                [target(f'sum by ({by}) (kubesignal_container_last_terminated_reason{{{s}, reason="OOMKilled"}}) '
                                        f'or count by ({by}) (kubesignal_container_memory_working_set_bytes{{{s}}}) * 0', "{{namespace}}/{{workload}}")],
                                "short", th=thresholds(("red", 1))), 12, 8))
    p.append(L.place(table("Workloads", "Current CPU, memory and throttling per workload. The workload opens its RED dashboard; the namespace narrows this one.",
                           [target(f"sum by ({by}, workload_kind) (rate(kubesignal_container_cpu_usage_seconds_total{{{s}}}[$__rate_interval]))", ref="A", table=True),
                            target(f"sum by ({by}, workload_kind) (kubesignal_container_memory_working_set_bytes{{{s}}})", ref="B", table=True),
                            target(f"max by ({by}, workload_kind) (kubesignal_container_memory_limit_utilization_ratio{{{s}}})", ref="C", table=True),
                            target(f"sum by ({by}, workload_kind) (increase(kubesignal_container_restarts_total{{{s}}}[$__rate_interval]))", ref="D", table=True)],
                           "short",
                           overrides=[
                               link_override("workload", "RED by service",
                                             f"/d/{UID['red']}?{KEEP}&var-namespace=${{__data.fields.namespace}}&var-workload=${{__data.fields.workload}}"),
                               link_override("namespace", "USE for this namespace",
                                             f"/d/{UID['workload']}?{KEEP}&var-namespace=${{__data.fields.namespace}}"),
                               unit_override("Value #A", "short", display_name="CPU (cores)"),
                               unit_override("Value #B", "bytes", display_name="Memory working set"),
                               unit_override("Value #C", "percentunit", thresholds(("orange", 0.8), ("red", 0.95)), "Memory of limit"),
                               unit_override("Value #D", "short", thresholds(("red", 1)), "Restarts (last interval)"),
                           ]), 24, 10))
    return dashboard("workload", "kubesignal / USE / Namespace and workload",
                     "Utilization, saturation and errors per namespace and workload, joined with requests and limits by the agent.", vars_, p)


# ---------------------------------------------------------------- RED: service

def red_service():
    L = Layout()
    base = "kubesignal_red_requests_total"
    vars_ = [
        cluster_var(base),
        query_var("namespace", "Namespace", f'label_values({base}{{cluster=~"$cluster"}}, namespace)'),
        query_var("workload", "Service (workload)", f'label_values({base}{{cluster=~"$cluster", namespace="$namespace"}}, workload)'),
        query_var("route", "Route", f'label_values({base}{{cluster=~"$cluster", namespace="$namespace", workload="$workload"}}, route)', multi=True, include_all=True),
    ]
    s = 'cluster=~"$cluster", namespace="$namespace", workload="$workload", route=~"$route"'
    req = f"rate(kubesignal_red_requests_total{{{s}}}[$__rate_interval])"
    err = f"rate(kubesignal_red_errors_total{{{s}}}[$__rate_interval])"
    bucket = f"rate(kubesignal_red_request_duration_seconds_bucket{{{s}}}[$__rate_interval])"
    err_th = thresholds(("orange", 0.01), ("red", 0.05))
    lat_th = thresholds(("orange", 0.25), ("red", 1))
    p = []
    p.append(L.place(stat("Request rate", "Requests per second over all selected routes.", f"sum({req})", "reqps"), 6, 4))
    p.append(L.place(stat("Error ratio", "Share of requests that failed (5xx by default).", f"sum({err}) / sum({req})", "percentunit", th=err_th, decimals=2), 6, 4))
    p.append(L.place(stat("p99 latency", "99th percentile of request duration.", f"histogram_quantile(0.99, sum by (le) ({bucket}))", "s", th=lat_th), 6, 4))
    p.append(L.place(stat("Pods' nodes reporting", "Nodes whose agent reports this workload's requests.", f"count(count by (node) ({req}))", "none"), 6, 4))
    status_expr = (f'sum by (status) (label_replace({req}, "status", "${{1}}xx", "code", "([0-9])..")) '
                   f'or sum by (status) (label_replace({req}, "status", "${{1}}", "code", "([a-zA-Z_]+)"))')
    p.append(L.place(timeseries("Rate by status class", "Rate: requests per second, stacked by status class (2xx, 4xx, 5xx; gRPC codes by name).",
                                [target(status_expr, "{{status}}")], "reqps", stack=True,
                                overrides=[color_override(k, v) for k, v in STATUS_COLORS.items()]), 8, 8))
    p.append(L.place(timeseries("Error ratio", "Errors: share of requests that failed.",
                                [target(f"sum({err}) / sum({req})", "error ratio")], "percentunit", th=err_th), 8, 8))
    p.append(L.place(timeseries("Latency", "Duration: p50, p90 and p99 from the request-duration histogram, and the mean.",
                                [target(f"histogram_quantile(0.50, sum by (le) ({bucket}))", "p50", "A"),
                                 target(f"histogram_quantile(0.90, sum by (le) ({bucket}))", "p90", "B"),
                                 target(f"histogram_quantile(0.99, sum by (le) ({bucket}))", "p99", "C"),
                                 target(f"sum(rate(kubesignal_red_request_duration_seconds_sum{{{s}}}[$__rate_interval])) / sum(rate(kubesignal_red_request_duration_seconds_count{{{s}}}[$__rate_interval]))", "mean", "D")],
                                "s", th=lat_th), 8, 8))
    p.append(L.place(timeseries("Rate by route", "Requests per second per route.",
                                [target(f"sum by (route) ({req})", "{{route}}")], "reqps", stack=True), 8, 8))
    p.append(L.place(timeseries("Error ratio by route", "Share of failed requests per route.",
                                [target(f"sum by (route) ({err}) / sum by (route) ({req})", "{{route}}")], "percentunit", th=err_th), 8, 8))
    p.append(L.place(timeseries("p99 latency by route", "99th percentile of request duration per route.",
                                [target(f"histogram_quantile(0.99, sum by (route, le) ({bucket}))", "{{route}}")], "s", th=lat_th), 8, 8))
    p.append(L.place(table("Routes", "Rate, error ratio and p99 per route and method, now.",
                           [target(f"sum by (route, method) ({req})", ref="A", table=True),
                            target(f"sum by (route, method) ({err}) / sum by (route, method) ({req})", ref="B", table=True),
                            target(f"histogram_quantile(0.99, sum by (route, method, le) ({bucket}))", ref="C", table=True)],
                           "reqps",
                           overrides=[
                               unit_override("Value #A", "reqps", display_name="Rate"),
                               unit_override("Value #B", "percentunit", err_th, "Error ratio"),
                               unit_override("Value #C", "s", lat_th, "p99"),
                               link_override("route", "USE of this workload",
                                             f"/d/{UID['workload']}?{KEEP}&var-namespace=${{namespace}}&var-workload=${{workload}}"),
                           ]), 24, 9))
    return dashboard("red", "kubesignal / RED / Service", "Rate, errors and duration of one service (workload), from the agent's RED series.", vars_, p)


# ---------------------------------------------------------------- SLO overview and detail

SLO_KEYS = "slo, service, namespace"


def burn(window, sel):
    return (f"slo:sli_error:ratio_rate{window}{{{sel}}} / on ({SLO_KEYS}) "
            f"(1 - slo:objective:ratio{{{sel}}})")


def window_error_ratio(sel):
    """Error ratio over each SLO's own window (30d, 28d, ...), from the window-independent budget
    series: remaining = 1 - ratio / (1 - objective)."""
    return (f"(1 - slo:error_budget:remaining_ratio{{{sel}}}) * on ({SLO_KEYS}) "
            f"(1 - slo:objective:ratio{{{sel}}})")


def slo_overview():
    L = Layout()
    vars_ = [
        cluster_var("slo:objective:ratio"),
        query_var("namespace", "Namespace", 'label_values(slo:objective:ratio{cluster=~"$cluster"}, namespace)', multi=True, include_all=True),
        query_var("owner", "Owner", 'label_values(slo:objective:ratio{cluster=~"$cluster", namespace=~"$namespace"}, owner)', multi=True, include_all=True),
    ]
    s = 'cluster=~"$cluster", namespace=~"$namespace", owner=~"$owner"'
    budget_th = {"mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "orange", "value": 0}, {"color": "green", "value": 0.25}]}
    burn_th = thresholds(("orange", 1), ("red", 6))
    p = []
    p.append(L.place(stat("SLOs", "SLOs defined.", f"count(slo:objective:ratio{{{s}}})", "none"), 6, 4))
    p.append(L.place(stat("SLOs with budget exhausted", "SLOs whose error budget for the window is spent.",
                          f"count(slo:error_budget:remaining_ratio{{{s}}} <= 0) or vector(0)", "none", th=thresholds(("red", 1))), 6, 4))
    p.append(L.place(stat("SLOs burning fast", "SLOs whose 1h burn rate is above 6x (budget gone in 5 days at this pace).",
                          f"count(({burn('1h', s)}) > 6) or vector(0)", "none", th=thresholds(("red", 1))), 6, 4))
    p.append(L.place(stat("Firing SLO alerts", "SLO burn-rate alerts firing now.",
                          'count(ALERTS{alertstate="firing", slo!=""}) or vector(0)', "none", th=thresholds(("red", 1))), 6, 4))
    p.append(L.place(table("Every SLO", "Objective, error ratio over the window, budget left and 1h burn rate of every SLO. The SLO name opens its detail.",
                           [target(f"slo:objective:ratio{{{s}}}", ref="A", table=True),
                            target(window_error_ratio(s), ref="B", table=True),
                            target(f"slo:error_budget:remaining_ratio{{{s}}}", ref="C", table=True),
                            target(burn("1h", s), ref="D", table=True)],
                           "percentunit",
                           overrides=[
                               link_override("slo", "SLO detail", f"/d/{UID['slo_detail']}?{KEEP}&var-slo=${{__data.fields.slo}}"),
                               link_override("service", "RED of the service",
                                             f"/d/{UID['red']}?{KEEP}&var-namespace=${{__data.fields.namespace}}&var-workload=${{__data.fields.service}}"),
                               unit_override("Value #A", "percentunit", display_name="Objective"),
                               unit_override("Value #B", "percentunit", display_name="Error ratio (SLO window)"),
                               unit_override("Value #C", "percentunit", budget_th, "Budget left"),
                               unit_override("Value #D", "none", burn_th, "Burn rate 1h (x)"),
                           ], hide=("Time", "__name__", "job", "instance")), 24, 10))
    p.append(L.place(timeseries("Error budget left", "Share of each SLO's error budget still unspent.",
                                [target(f"slo:error_budget:remaining_ratio{{{s}}}", "{{service}} {{slo}}")], "percentunit",
                                th=budget_th, min0=False), 12, 8))
    p.append(L.place(timeseries("Burn rate 1h (x budget)", "How many times faster than sustainable each SLO spends its budget; 1 spends it exactly over the window.",
                                [target(burn("1h", s), "{{service}} {{slo}}")], "none", th=burn_th), 12, 8))
    return dashboard("slo_overview", "kubesignal / SLO / Overview", "Every SLO: budget left and burn rate.", vars_, p, time="now-24h")


def slo_detail():
    L = Layout()
    vars_ = [
        cluster_var("slo:objective:ratio"),
        query_var("slo", "SLO", 'label_values(slo:objective:ratio{cluster=~"$cluster"}, slo)'),
    ]
    s = 'cluster=~"$cluster", slo="$slo"'
    budget_th = {"mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "orange", "value": 0}, {"color": "green", "value": 0.25}]}
    p = []
    p.append(L.place(stat("Objective", "Target share of good events over the window.", f"slo:objective:ratio{{{s}}}", "percentunit", decimals=3, color_mode="none"), 6, 4))
    p.append(L.place(stat("SLI over the window", "Share of good events over the SLO's window (30 days by default).", f"1 - ({window_error_ratio(s)})", "percentunit", decimals=3), 6, 4))
    p.append(L.place(stat("Error budget left", "Share of the window's error budget still unspent; red below zero.", f"slo:error_budget:remaining_ratio{{{s}}}", "percentunit", th=budget_th, decimals=1), 6, 4))
    p.append(L.place(stat("Burn rate 1h (x)", "Budget spend speed over the last hour; 14.4 pages (2% of a 30d budget in 1h).", burn("1h", s), "none",
                          th=thresholds(("orange", 1), ("red", 14.4)), decimals=2), 6, 4))
    burn_targets = [target(burn(w, s), w, chr(ord("A") + i)) for i, w in enumerate(["5m", "30m", "1h", "2h", "6h", "1d", "3d"])]
    p.append(L.place(timeseries("Burn rate per window (x budget)", "Burn rate over each alerting window. Pages: 1h and 5m above 14.4, or 6h and 30m above 6. Tickets: 1d and 2h above 3, or 3d and 6h above 1.",
                                burn_targets, "none", th=thresholds(("yellow", 1), ("orange", 6), ("red", 14.4))), 24, 9))
    p.append(L.place(timeseries("Error ratio per window", "Share of bad events over each window.",
                                [target(f"slo:sli_error:ratio_rate{w}{{{s}}}", w, chr(ord("A") + i)) for i, w in enumerate(["5m", "1h", "6h", "1d", "3d"])],
                                "percentunit"), 12, 8))
    p.append(L.place(timeseries("Error budget left", "Share of the error budget still unspent over time.",
                                [target(f"slo:error_budget:remaining_ratio{{{s}}}", "budget left")], "percentunit", th=budget_th, min0=False), 12, 8))
    p.append(L.place(table("Alerts of this SLO", "Burn-rate alerts of this SLO that are pending or firing.",
                           [target(f'ALERTS{{slo="$slo"}}', ref="A", table=True)], "none",
                           hide=("Time", "__name__", "Value")), 12, 6))
    p.append(L.place(table("Service", "The SLO's service, namespace and owner; the service opens its RED dashboard.",
                           [target(f"slo:info{{{s}}}", ref="A", table=True)], "none",
                           overrides=[link_override("service", "RED of the service",
                                                    f"/d/{UID['red']}?{KEEP}&var-namespace=${{__data.fields.namespace}}&var-workload=${{__data.fields.service}}")],
                           hide=("Time", "__name__", "Value")), 12, 6))
    return dashboard("slo_detail", "kubesignal / SLO / Detail", "One SLO: budget, burn rate per alerting window, alerts.", vars_, p, time="now-7d")


# ---------------------------------------------------------------- self-health

def self_health():
    L = Layout()
    vars_ = [cluster_var("kubesignal_agent_series")]
    c = 'cluster=~"$cluster"'
    p = []
    p.append(L.place(stat("Agents up", "Agent endpoints Prometheus scrapes successfully, over all agent endpoints.",
                          f'sum(up{{{c}, job="kubesignal-agent"}}) / count(up{{{c}, job="kubesignal-agent"}})', "percentunit",
                          th={"mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}]}), 6, 4))
    p.append(L.place(stat("Series exported", "Series all agents export.", f"sum(kubesignal_agent_series{{{c}}})", "short"), 6, 4))
    p.append(L.place(stat("App targets down", "Application /metrics targets the agents cannot scrape.",
                          f"count(kubesignal_agent_target_up{{{c}}} == 0) or vector(0)", "none", th=thresholds(("red", 1))), 6, 4))
    p.append(L.place(stat("Firing alerts", "Alerts the evaluator has firing now.", f'count(ALERTS{{{c}, alertstate="firing"}}) or vector(0)', "none",
                          th=thresholds(("orange", 1))), 6, 4))
    p.append(L.place(timeseries("Collection duration", "How long the last collection from each source took.",
                                [target(f"max by (source) (kubesignal_agent_scrape_duration_seconds{{{c}}})", "{{source}}")], "s",
                                th=thresholds(("orange", 5), ("red", 10))), 12, 8))
    p.append(L.place(timeseries("Collection errors", "Failed collections per second by source and reason.",
                                [target(f"sum by (source, reason) (rate(kubesignal_agent_scrape_errors_total{{{c}}}[$__rate_interval]))", "{{source}} {{reason}}")], "cps",
                                th=thresholds(("red", 0.01))), 12, 8))
    p.append(L.place(timeseries("Series per agent", "Series each agent exports.",
                                [target(f"kubesignal_agent_series{{{c}}}", "{{instance}}")], "short"), 12, 8))
    p.append(L.place(table("App targets down", "Application targets the agent could not scrape at its last collection.",
                           [target(f"kubesignal_agent_target_up{{{c}}} == 0", ref="A", table=True)], "none",
                           hide=("Time", "__name__", "Value")), 12, 8))
    p.append(L.place(timeseries("Rule group duration", "How long each rule group's last evaluation took.",
                                [target(f"kubesignal_evaluator_rule_group_last_duration_seconds{{{c}}}", "{{rule_group}}")], "s"), 12, 8))
    p.append(L.place(timeseries("Rule evaluation failures and missed iterations", "Failed rule evaluations (queries) and skipped group iterations per second.",
                                [target(f"sum by (rule_group) (rate(kubesignal_evaluator_rule_evaluation_failures_total{{{c}}}[$__rate_interval]))", "failed {{rule_group}}", "A"),
                                 target(f"sum by (rule_group) (rate(kubesignal_evaluator_rule_group_iterations_missed_total{{{c}}}[$__rate_interval]))", "missed {{rule_group}}", "B")],
                                "cps", th=thresholds(("red", 0.01))), 12, 8))
    p.append(L.place(timeseries("Notifications", "Notifications delivered and failed per second, by receiver.",
                                [target(f"sum by (receiver) (rate(kubesignal_evaluator_notifications_sent_total{{{c}}}[$__rate_interval]))", "sent {{receiver}}", "A"),
                                 target(f"sum by (receiver) (rate(kubesignal_evaluator_notifications_failed_total{{{c}}}[$__rate_interval]))", "failed {{receiver}}", "B")],
                                "cps", overrides=[{"matcher": {"id": "byRegexp", "options": "failed.*"},
                                                   "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}]}]), 12, 8))
    p.append(L.place(timeseries("Alerts by state", "Pending and firing alerts by name.",
                                [target(f"count by (alertname, alertstate) (ALERTS{{{c}}})", "{{alertname}} {{alertstate}}")], "none"), 12, 8))
    return dashboard("self", "kubesignal / Self-health", "Is kubesignal itself collecting, evaluating and notifying?", vars_, p)


def main():
    parser = argparse.ArgumentParser(description="Write the kubesignal Grafana dashboards.")
    parser.add_argument("--out", default=HERE, help="output folder (default: dashboards/)")
    out_dir = parser.parse_args().out
    key_of = {"use-node": "node", "use-cluster": "cluster", "use-workload": "workload", "red-service": "red",
              "slo-overview": "slo_overview", "slo": "slo_detail", "self-health": "self"}
    for name, fn in [
        ("use-node", use_node),
        ("use-cluster", use_cluster),
        ("use-workload", use_workload),
        ("red-service", red_service),
        ("slo-overview", slo_overview),
        ("slo", slo_detail),
        ("self-health", self_health),
    ]:
        path = os.path.join(out_dir, f"{UID[key_of[name]]}.json")
        with open(path, "w") as f:
            json.dump(fn(), f, indent=2, sort_keys=False)
            f.write("\n")
        print(path)


if __name__ == "__main__":
    main()
