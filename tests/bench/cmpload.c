/* cmpload: CMP load client (placeholder until the benchmark lands). */
int main(void)
{
    return 0;
}
