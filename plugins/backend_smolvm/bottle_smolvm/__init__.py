"""bottle backend "smolvm": each bottle is a libkrun microVM."""
