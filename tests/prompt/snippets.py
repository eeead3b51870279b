"""Real-looking code in several languages, shared by the prompt tests."""

PYTHON = '''"""Small HTTP helpers."""
import json
import logging
from urllib.parse import urlencode

TIMEOUT = 10
_LOGGER = logging.getLogger(__name__)


def build_url(base, path, params=None):
    """Join a base URL, a path and query parameters."""
    url = base.rstrip("/") + "/" + path.lstrip("/")
    if params:
        url += "?" + urlencode(params)
    return url


def parse_response(body):
    """Decode a JSON body, returning None on garbage."""
    try:
        return json.loads(body)
    except ValueError:
        _LOGGER.warning("bad JSON body")
        return None


class RetryPolicy:
    """How often and how long to retry."""

    def __init__(self, attempts=3, backoff=0.5):
        self.attempts = attempts
        self.backoff = backoff

    def delays(self):
        return [self.backoff * 2 ** i for i in range(self.attempts)]


def fetch_json(session, base, path, params=None):
    """GET a JSON document, retrying on failure."""
    url = build_url(base, path, params)
    for delay in RetryPolicy().delays():
        response = session.get(url, timeout=TIMEOUT)
        if response.ok:
            return parse_response(response.text)
    return None
'''

BIG_CLASS = '''import os


class ConfigStore:
    """A key-value store persisted to a file."""

    separator = "="

    def __init__(self, path):
        self.path = path
        self.values = {}

    def load(self):
        """Read every key=value line of the file."""
        with open(self.path) as handle:
            for line in handle:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                key, _, value = line.partition(self.separator)
                self.values[key.strip()] = value.strip()
        return self.values

    def save(self):
        """Write the values back, one per line, sorted."""
        tmp = self.path + ".tmp"
        with open(tmp, "w") as handle:
            for key in sorted(self.values):
                handle.write(f"{key}{self.separator}{self.values[key]}\\n")
        os.replace(tmp, self.path)

    def get(self, key, default=None):
        """Return the value of key, or default."""
        return self.values.get(key, default)

    def set(self, key, value):
        """Set a value; keys may not contain the separator."""
        if self.separator in key:
            raise ValueError(f"bad key {key!r}")
        self.values[key] = str(value)

    def delete(self, key):
        """Remove a key if present, reporting whether it was."""
        return self.values.pop(key, None) is not None

    def items(self):
        """All pairs, sorted by key, as a list of tuples for display."""
        return sorted(self.values.items(), key=lambda pair: pair[0].lower())
'''

JAVASCRIPT = """const fs = require('fs');
const path = require('path');

const DEFAULT_ENCODING = 'utf8';

function readLines(file) {
  const text = fs.readFileSync(file, DEFAULT_ENCODING);
  return text.split('\\n').filter((line) => line.length > 0);
}

const countWords = (lines) => {
  let total = 0;
  for (const line of lines) {
    total += line.split(/\\s+/).length;
  }
  return total;
};

class Report {
  constructor(dir) {
    this.dir = dir;
  }

  summarize() {
    const files = fs.readdirSync(this.dir).map((f) => path.join(this.dir, f));
    return files.map((file) => ({ file, words: countWords(readLines(file)) }));
  }
}

module.exports = { readLines, countWords, Report };
"""

TYPESCRIPT = """import { EventEmitter } from "events";

export interface Job {
  id: string;
  priority: number;
  run(): Promise<void>;
}

export type JobState = "queued" | "running" | "done";

export class JobQueue extends EventEmitter {
  private readonly jobs: Job[] = [];

  enqueue(job: Job): void {
    this.jobs.push(job);
    this.jobs.sort((a, b) => b.priority - a.priority);
    this.emit("queued", job.id);
  }

  async drain(): Promise<number> {
    let count = 0;
    while (this.jobs.length > 0) {
      const job = this.jobs.shift() as Job;
      await job.run();
      count += 1;
    }
    return count;
  }
}

export function makeJob(id: string, priority: number, work: () => Promise<void>): Job {
  return { id, priority, run: work };
}
"""

RUST = """use std::collections::HashMap;
use std::io::{self, BufRead};

const MAX_WORDS: usize = 1000;

#[derive(Debug, Default)]
pub struct WordCounter {
    counts: HashMap<String, usize>,
}

impl WordCounter {
    pub fn new() -> Self {
        Self { counts: HashMap::new() }
    }

    pub fn add_line(&mut self, line: &str) {
        for word in line.split_whitespace() {
            *self.counts.entry(word.to_lowercase()).or_insert(0) += 1;
        }
    }

    pub fn top(&self, n: usize) -> Vec<(&String, &usize)> {
        let mut items: Vec<_> = self.counts.iter().collect();
        items.sort_by(|a, b| b.1.cmp(a.1));
        items.truncate(n.min(MAX_WORDS));
        items
    }
}

fn main() -> io::Result<()> {
    let mut counter = WordCounter::new();
    for line in io::stdin().lock().lines() {
        counter.add_line(&line?);
    }
    for (word, count) in counter.top(10) {
        println!("{word}: {count}");
    }
    Ok(())
}
"""

C = """#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_SIZE 4096

typedef struct {
    char *data;
    size_t len;
} buffer_t;

static buffer_t *buffer_new(size_t cap)
{
    buffer_t *buf = malloc(sizeof(buffer_t));
    if (buf == NULL)
        return NULL;
    buf->data = calloc(cap, 1);
    buf->len = 0;
    return buf;
}

static void buffer_free(buffer_t *buf)
{
    if (buf != NULL) {
        free(buf->data);
        free(buf);
    }
}

int count_lines(FILE *fp)
{
    char line[BUF_SIZE];
    int lines = 0;
    while (fgets(line, sizeof line, fp) != NULL)
        lines++;
    return lines;
}

int main(int argc, char **argv)
{
    FILE *fp = argc > 1 ? fopen(argv[1], "r") : stdin;
    printf("%d\\n", count_lines(fp));
    return 0;
}
"""

CPP = """#include <iostream>
#include <string>
#include <vector>

namespace geometry {

struct Point {
    double x;
    double y;
};

double area(const std::vector<Point>& polygon) {
    double sum = 0.0;
    for (size_t i = 0; i < polygon.size(); ++i) {
        const Point& a = polygon[i];
        const Point& b = polygon[(i + 1) % polygon.size()];
        sum += a.x * b.y - b.x * a.y;
    }
    return sum / 2.0;
}

}  // namespace geometry

template <typename T>
T clamp(T value, T low, T high) {
    return std::max(low, std::min(value, high));
}

int main() {
    std::vector<geometry::Point> square{{0, 0}, {1, 0}, {1, 1}, {0, 1}};
    std::cout << geometry::area(square) << std::endl;
    return 0;
}
"""

GO = """package main

import (
	"fmt"
	"os"
	"strings"
)

const maxDepth = 8

type Node struct {
	Name     string
	Children []*Node
}

func (n *Node) Add(child *Node) {
	n.Children = append(n.Children, child)
}

func walk(n *Node, depth int, visit func(*Node, int)) {
	if depth > maxDepth {
		return
	}
	visit(n, depth)
	for _, child := range n.Children {
		walk(child, depth+1, visit)
	}
}

func main() {
	root := &Node{Name: "root"}
	root.Add(&Node{Name: "child"})
	walk(root, 0, func(n *Node, d int) {
		fmt.Fprintln(os.Stdout, strings.Repeat("  ", d)+n.Name)
	})
}
"""

JAVA = """package com.example.shop;

import java.util.ArrayList;
import java.util.List;

public class Cart {
    private final List<Item> items = new ArrayList<>();

    public void addItem(Item item) {
        if (item == null) {
            throw new IllegalArgumentException("item");
        }
        items.add(item);
    }

    public double total() {
        double sum = 0;
        for (Item item : items) {
            sum += item.price() * item.quantity();
        }
        return sum;
    }

    public static void main(String[] args) {
        Cart cart = new Cart();
        cart.addItem(new Item("book", 12.5, 2));
        System.out.println(cart.total());
    }
}
"""

SHELL = """#!/bin/bash
set -euo pipefail

BACKUP_DIR="${BACKUP_DIR:-/var/backups}"

log() {
    echo "[$(date +%H:%M:%S)] $*" >&2
}

backup_file() {
    local src="$1"
    if [[ ! -f "$src" ]]; then
        log "missing: $src"
        return 1
    fi
    cp "$src" "$BACKUP_DIR/$(basename "$src").bak"
}

for f in "$@"; do
    backup_file "$f" || true
done
"""

ALL = {
    "python": PYTHON,
    "javascript": JAVASCRIPT,
    "typescript": TYPESCRIPT,
    "rust": RUST,
    "c": C,
    "cpp": CPP,
    "go": GO,
    "java": JAVA,
    "shell": SHELL,
}

SYNC_FUNCTION = '''def fetch_user_data(user_ids, session, base_url, timeout=10):
    """Fetch user records one at a time and merge each with its profile."""
    results = {}
    for user_id in user_ids:
        url = f"{base_url}/users/{user_id}"
        response = session.get(url, timeout=timeout)
        if response.status_code != 200:
            results[user_id] = None
            continue
        payload = response.json()
        profile = session.get(f"{url}/profile", timeout=timeout).json()
        payload["profile"] = profile
        results[user_id] = payload
    return results
'''


def seed_example() -> str:
    """The seed's example: ~8.3 KB of one synchronous function repeated, then the instruction."""
    copies: list[str] = []
    while sum(len(c) + 1 for c in copies) < 7800:
        copies.append(SYNC_FUNCTION)
    return "\n".join(copies) + "\nRefactor this to use async/await"
