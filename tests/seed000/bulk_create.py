import requests
users = [
    {"name": "Alice", "email": "alice@example.com"},
    {"name": "Bob", "email": "bob@example.com"},
    {"name": "Charlie", "email": "charlie@example.com"}
]
response = requests.post(
    "https://api.example.com/users/batch",
    json={"users": users}
)
result = response.json()
print(f"Created: {result['success_count']} users")
print(f"Failed: {result['error_count']}")
for created in result['created']:
    print(f" {created['id']}: {created['name']}")
