-- The DuckLake catalog's database (store.url = ducklake:postgres:dbname=east host=postgres user=prefect).
CREATE DATABASE east;
