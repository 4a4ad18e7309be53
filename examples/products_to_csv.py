"""A data job: crawl a shop's listing pages and write one CSV row per product.

    python examples/products_to_csv.py http://127.0.0.1:8000/ products.csv

It shows the two ways to pull data out of pages: `[parse.fields]` CSS
selectors (here set in code; a config.toml works the same) and an `extract`
function for what selectors cannot say. `extract` runs in the parse worker
processes; it is sent there by value, so a function defined anywhere works.
"""

from __future__ import annotations

import asyncio
import csv
import sys
from typing import Any

from scraper import Config, Page, Scraper
from scraper.config import CrawlConfig, FieldSpec, ParseConfig


def extract(soup: Any, page: Page) -> dict[str, Any]:
    """Price as a number, and whether the product is in stock."""
    price = soup.select_one(".price")
    value = None
    if price is not None:
        digits = price.get_text(strip=True).lstrip("$€£").replace(",", "")
        try:
            value = float(digits)
        except ValueError:
            value = None
    return {"price_value": value, "in_stock": soup.select_one(".sold-out") is None}


async def main(start: str, out_path: str) -> int:
    config = Config(
        crawl=CrawlConfig(depth=2, allow=(r"/product/", r"/page/"), max_pages=500),
        parse=ParseConfig(fields={
            "name": FieldSpec(selector="h1.name"),
            "sku": FieldSpec(selector="[data-sku]", attr="data-sku"),
            "tags": FieldSpec(selector=".tag", all=True),
        }),
    )
    rows = 0
    async with Scraper(config, extract=extract) as scraper:
        with open(out_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["url", "name", "sku", "price", "in_stock", "tags"])
            async for page in scraper.crawl([start]):
                if page.fields.get("name") is None:
                    continue  # a listing page, not a product
                fields = page.fields
                writer.writerow([page.url, fields["name"], fields["sku"], fields["price_value"],
                                 fields["in_stock"], "|".join(fields["tags"])])
                rows += 1
    print(f"{rows} products written to {out_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python examples/products_to_csv.py START_URL OUT.csv")
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
